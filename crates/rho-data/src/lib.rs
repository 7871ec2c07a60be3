//! rho-data: video decoding, ρ-clip sampling, augmentation and loading, with no Burn backend.
//!
//! Not implemented yet: this crate is filled by its own issue and exports nothing so far.
