//! Errors of the model crate: shape problems and weight-file problems, each naming what to fix.

use std::path::PathBuf;

/// Everything that can go wrong when building, running or loading a backbone.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The input tensor does not have the shape the network needs.
    #[error("input shape {got:?} is not valid for {arch}: {reason}")]
    InputShape {
        arch: String,
        got: Vec<usize>,
        reason: String,
    },

    /// A configuration that cannot describe a working network.
    #[error("invalid backbone configuration: {0}")]
    Config(String),

    /// An architecture name that no preset matches.
    #[error("unknown architecture `{name}`; known presets: {known}")]
    UnknownArch { name: String, known: String },

    /// A weight file could not be read.
    #[error("cannot read weights from {path}: {reason}")]
    ReadWeights { path: PathBuf, reason: String },

    /// A weight file could not be written.
    #[error("cannot write weights to {path}: {reason}")]
    WriteWeights { path: PathBuf, reason: String },

    /// The weights do not match the network: missing, unexpected or mis-shaped keys.
    #[error("{0}")]
    KeyMismatch(Box<crate::weights::MismatchReport>),

    /// A naming scheme that cannot express this network.
    #[error("naming `{naming}` cannot express {what}; use {hint}")]
    Naming {
        naming: String,
        what: String,
        hint: String,
    },
}
