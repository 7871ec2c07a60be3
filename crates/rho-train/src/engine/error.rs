//! What can stop a run, as types: the caller (the CLI, a test) can tell a recipe to fix from a
//! machine too small, a diverged run, a broken file or a failed peer.

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The recipe or the run options cannot work (checked before any compute is spent).
    #[error("{0}")]
    Config(String),
    /// A step would not fit in the memory given (see [`crate::memory`]).
    #[error("{0}")]
    OutOfMemory(String),
    /// The loss became NaN or infinite.
    #[error("the loss is {loss} at step {step} (epoch {epoch:.3}); lower the learning rate (optim.base_lr) or raise the warm-up (optim.warmup_epochs)")]
    Diverged { step: usize, epoch: f64, loss: f64 },
    /// The representation collapsed (see `rho_objectives::diagnostics::collapse`).
    #[error("the representation collapsed at step {step} (epoch {epoch:.3}): {reason}; lower the learning rate, or for ρBYOL/ρMoCo raise method.momentum_base")]
    Collapsed {
        step: usize,
        epoch: f64,
        reason: String,
    },
    /// A file the run reads or writes; `action` says what was tried ("create", "lock", …).
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A hook (the kNN monitor, a metrics writer) failed.
    #[error("{0}")]
    Hook(String),
    #[error(transparent)]
    Data(#[from] rho_data::DataError),
    #[error(transparent)]
    Objective(#[from] rho_objectives::ObjectiveError),
    #[error(transparent)]
    Model(#[from] rho_model::ModelError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Collective(#[from] crate::distributed::CollectiveError),
    /// A data-parallel rank failed (the error is the rank's; not a `source`, so that it is
    /// printed once).
    #[error("rank {rank}: {error}")]
    Rank { rank: usize, error: Box<TrainError> },
    /// A rank's thread panicked: a bug in rho, reported instead of aborting the others.
    #[error("rank {rank} panicked (a bug in rho, please report it): {message}")]
    Panicked { rank: usize, message: String },
}
