//! rho-train: pre-training recipes, schedules, optimisers, the pre-training loop with
//! checkpoints and resume, and downstream evaluation.

pub mod checkpoint;
pub mod dataset;
pub mod distributed;
pub mod engine;
pub mod eval;
pub mod loss_scale;
pub mod memory;
pub mod optim;
pub mod plot;
pub mod recipe;
pub mod run_lock;
pub mod schedule;
pub mod step;
pub mod tensorboard;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use distributed::pretrain_data_parallel;
pub use engine::{
    pretrain, pretrain_with, FnHooks, Hooks, NoHooks, RankContext, RunOptions, StepLog, TrainError,
    Trainer,
};
pub use loss_scale::LossScaler;
pub use optim::{GroupedOptimizer, SgdRule};
pub use recipe::{Recipe, RecipeError};
pub use schedule::{scale_lr, CosineSchedule};
pub use step::{train_step, MicroBatch, StepEnv, StepOutcome, StepPlan};
