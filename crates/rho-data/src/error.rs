//! Errors of the data pipeline.

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("invalid data configuration: {0}")]
    Config(String),
}
