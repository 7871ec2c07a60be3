//! What a caller chooses beyond the recipe, and what every step reports.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// How to run beyond the recipe.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this many steps (in total, counting resumed ones).
    pub max_steps: Option<usize>,
    /// Write a checkpoint into the recipe's output folder every N steps.
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept (the oldest are deleted).
    pub keep: usize,
    /// Continue from this checkpoint.
    pub resume: Option<PathBuf>,
    /// Refuse to start when the memory estimate exceeds this many bytes (see [`crate::memory`]).
    pub memory_limit: Option<f64>,
    /// Resume although the recipe differs from the checkpoint's in its batch, data, schedule or
    /// method constants (never in its network or method); see [`crate::engine::resume_changes`].
    pub allow_recipe_change: bool,
}

/// What one step reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: f64,
    pub lr: f64,
    /// The optimiser was skipped (MoCo's queue warm-up).
    pub skipped: bool,
    /// Seconds spent waiting for the batch, and for the whole step (wait included).
    pub data_wait_s: f64,
    pub step_s: f64,
    /// Clips in the step (videos × views).
    pub clips: usize,
    /// Steps the run will take in total.
    pub total_steps: usize,
    pub metrics: BTreeMap<&'static str, f64>,
}
