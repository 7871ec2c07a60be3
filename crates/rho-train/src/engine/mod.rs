//! The pre-training engine: data → method step → optimiser, one code path for every method.
//!
//! - [`Trainer`]: a run built once (checks, loader, networks, optimiser, resume), then
//!   [`Trainer::run`] with the caller's [`Hooks`], or [`Trainer::step`] by step.
//! - [`DataParallel`]: the trainer's place among the replicas of a data-parallel run.
//! - [`TrainError`]: what can stop a run, by kind.
//!
//! Generic over the autodiff backend. Checkpoints hold everything the next step depends on
//! (networks, optimiser state, the method's state, loader position, step), so a resumed run
//! continues exactly. Gradient accumulation trains the same global batch on a small machine;
//! BatchNorm then sees micro-batch statistics, so it is not the same run as the large batch (as
//! in any framework).

mod checks;
mod data;
mod data_parallel;
mod error;
mod hooks;
mod options;
mod state;
mod trainer;

use burn::tensor::backend::AutodiffBackend;
use rho_objectives::SslNetwork;

pub use checks::{memory_fits, preflight, resume_changes};
pub use data::{index_signature, load_index, loader_config, micro_batches};
pub use data_parallel::{DataParallel, RankContext};
pub use error::TrainError;
pub use hooks::{on_step, FnHooks, Hooks, NoHooks};
pub use options::{RunOptions, StepLog};
pub use trainer::{build_networks, BoxedObjective, Trainer};

use crate::recipe::Recipe;

/// Pre-trains on one device for the recipe's epochs (or `max_steps`), calling `on_step` after
/// every step, and returns the online network.
pub fn pretrain<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    max_steps: Option<usize>,
    on_step: impl FnMut(&StepLog),
) -> Result<SslNetwork<B>, TrainError> {
    let opts = RunOptions {
        max_steps,
        ..Default::default()
    };
    pretrain_with(recipe, device, opts, on_step)
}

/// [`pretrain`] with checkpoints and resume.
pub fn pretrain_with<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    opts: RunOptions,
    on_step: impl FnMut(&StepLog),
) -> Result<SslNetwork<B>, TrainError> {
    Trainer::new(recipe, device, opts, None)?.run(&mut hooks::on_step(on_step))
}
