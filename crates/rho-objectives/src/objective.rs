//! `Objective`: what the training engine needs of a method. The four paper methods are one
//! implementation ([`Method`]); a new method implements this trait and registers itself
//! ([`crate::registry`]), and the trainer, checkpoints and data parallelism take it unchanged.

use burn::tensor::{backend::AutodiffBackend, Tensor};

use crate::collectives::Collectives;
use crate::error::ObjectiveError;
use crate::method::{Method, MethodConfig, MethodKind, StepContext, StepOutput};
use crate::network::SslNetwork;
use crate::state::StateBlobs;

pub trait Objective<B: AutodiffBackend>: Send {
    /// The configuration the method was built from (heads, constants).
    fn config(&self) -> &MethodConfig;

    /// Per-step preparation of the online network before the loss (e.g. SwAV re-normalises its
    /// prototypes).
    fn prepare(&self, online: SslNetwork<B>) -> SslNetwork<B> {
        online
    }

    /// The loss and metrics of one (micro-)batch of V ≥ 2 clip tensors [B, 3, T, H, W]; the
    /// method may move its own state (a target network, a queue) here.
    fn step(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext<'_>,
        coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError>;

    /// Everything the method carries between steps, as named blobs (`method.*`).
    fn save_state(&self) -> Result<StateBlobs, ObjectiveError> {
        Ok(StateBlobs::new())
    }

    /// Restores [`Objective::save_state`]'s blobs.
    fn load_state(
        &mut self,
        _blobs: &StateBlobs,
        _device: &B::Device,
    ) -> Result<(), ObjectiveError> {
        Ok(())
    }

    /// Steps at the start that compute the loss but skip the optimiser, given how many keys
    /// (clips) a step produces: MoCo fills its queue.
    fn warmup_steps(&self, _clips_per_step: usize) -> usize {
        0
    }
}

impl<B: AutodiffBackend> Objective<B> for Method<B> {
    fn config(&self) -> &MethodConfig {
        &self.config
    }

    fn prepare(&self, online: SslNetwork<B>) -> SslNetwork<B> {
        Method::prepare(self, online)
    }

    fn step(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext<'_>,
        coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        Method::step(self, online, clips, ctx, coll)
    }

    fn save_state(&self) -> Result<StateBlobs, ObjectiveError> {
        Method::save_state(self)
    }

    fn load_state(&mut self, blobs: &StateBlobs, device: &B::Device) -> Result<(), ObjectiveError> {
        Method::load_state(self, blobs, device)
    }

    /// ⌈K / keys per step⌉ for MoCo (docs/method.md §2.2), none for the others.
    fn warmup_steps(&self, clips_per_step: usize) -> usize {
        match self.config.kind {
            MethodKind::Moco => self.config.queue_len.div_ceil(clips_per_step.max(1)),
            _ => 0,
        }
    }
}
