//! `Hooks`: what a caller runs between steps (progress bars, metrics files, plots, a kNN
//! monitor), so the loop itself stays one code path for every caller.

use burn::tensor::backend::AutodiffBackend;
use rho_objectives::SslNetwork;

use super::{StepLog, TrainError};

/// Called by [`Trainer::run`](super::Trainer::run) on rank 0 only.
pub trait Hooks<B: AutodiffBackend> {
    /// After every step.
    fn on_step(&mut self, _log: &StepLog) {}
    /// At the end of every epoch (`epochs_done` counts from 1); an error stops the run.
    fn on_epoch(&mut self, _epochs_done: u64, _online: &SslNetwork<B>) -> Result<(), TrainError> {
        Ok(())
    }
}

/// No hooks.
pub struct NoHooks;

impl<B: AutodiffBackend> Hooks<B> for NoHooks {}

/// Hooks from two closures.
pub struct FnHooks<S, E> {
    pub on_step: S,
    pub on_epoch: E,
}

impl<B, S, E> Hooks<B> for FnHooks<S, E>
where
    B: AutodiffBackend,
    S: FnMut(&StepLog),
    E: FnMut(u64, &SslNetwork<B>) -> Result<(), TrainError>,
{
    fn on_step(&mut self, log: &StepLog) {
        (self.on_step)(log)
    }
    fn on_epoch(&mut self, epochs_done: u64, online: &SslNetwork<B>) -> Result<(), TrainError> {
        (self.on_epoch)(epochs_done, online)
    }
}

/// A step hook alone.
pub fn on_step<B: AutodiffBackend>(f: impl FnMut(&StepLog)) -> impl Hooks<B> {
    FnHooks {
        on_step: f,
        on_epoch: |_: u64, _: &SslNetwork<B>| Ok(()),
    }
}
