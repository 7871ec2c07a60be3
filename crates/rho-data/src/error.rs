//! Errors of the data pipeline.

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("invalid data configuration: {0}")]
    Config(String),
    /// A dataset index (list, CSV, JSON) that cannot be read; `line` 0 means the whole file.
    #[error("{}{}: {reason}", path.display(), if *line > 0 { format!(", line {line}") } else { String::new() })]
    Index {
        path: std::path::PathBuf,
        line: usize,
        reason: String,
    },
    /// A file rho writes (generated videos and lists) that cannot be written.
    #[error("cannot write {}: {reason}", path.display())]
    Write {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A video that cannot be opened or decoded.
    #[error("cannot decode {}: {reason}", path.display())]
    Decode {
        path: std::path::PathBuf,
        reason: String,
    },
}
