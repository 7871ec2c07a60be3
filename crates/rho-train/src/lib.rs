//! rho-train: pre-training recipes and schedules; the training engine, checkpoints and evaluation
//! arrive with their issues.

pub mod optim;
pub mod recipe;
pub mod schedule;

pub use optim::{GroupedOptimizer, SgdRule};
pub use recipe::{Recipe, RecipeError};
pub use schedule::{scale_lr, CosineSchedule};
