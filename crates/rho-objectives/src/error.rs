//! Errors of the objectives.

#[derive(Debug, thiserror::Error)]
pub enum ObjectiveError {
    #[error("shape error: {0}")]
    Shape(String),
    #[error("invalid objective configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] rho_model::ModelError),
}
