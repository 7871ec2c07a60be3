//! rho-train: pre-training recipes, schedules, optimisers and the pre-training loop; checkpoints,
//! resume and evaluation arrive with their issues.

pub mod checkpoint;
pub mod engine;
pub mod optim;
pub mod plot;
pub mod recipe;
pub mod schedule;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use engine::{pretrain, pretrain_with, RunOptions, StepLog, TrainError};
pub use optim::{GroupedOptimizer, SgdRule};
pub use recipe::{Recipe, RecipeError};
pub use schedule::{scale_lr, CosineSchedule};
