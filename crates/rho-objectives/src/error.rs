//! Errors of the objectives.

#[derive(Debug, thiserror::Error)]
pub enum ObjectiveError {
    #[error("shape error: {0}")]
    Shape(String),
    #[error("invalid objective configuration: {0}")]
    Config(String),
    /// Saved method state that cannot be restored (checkpoints).
    #[error("method state: {0}")]
    State(String),
    #[error(transparent)]
    Model(#[from] rho_model::ModelError),
}
