//! rho-train: the pre-training engine, evaluation protocols, checkpoints and distributed runs.
//!
//! Not implemented yet: this crate is filled by its own issue and exports nothing so far.
