//! rho-data: ρ-clip video data without a Burn backend.
//!
//! So far: dataset [`index`]es, clip [`augment`]ations, the ρ-clip [`sampler`] (spec §3.1) and the counter-based
//! randomness ([`rng`]) that makes every draw a function of (seed, epoch, sample, clip).
//! plus FFmpeg decoding and the loader. (FFmpeg for files, zune-jpeg for frame folders) (their issue is open).

pub mod augment;
#[cfg(feature = "video")]
pub mod decode;
pub mod error;
pub mod eval_views;
pub mod frames;
pub mod index;
pub mod loader;
pub mod rng;
pub mod sampler;
pub mod synth;
pub mod synthetic;

pub use error::DataError;
pub use index::{Split, VideoEntry, VideoIndex, VideoSource};
pub use loader::{
    Batch, InOrderIter, LoaderConfig, LoaderPosition, ShortVideoPolicy, VideoLoader, ViewMode,
};
pub use sampler::{ClipFrames, ClipPlan, ClipSamplerConfig, VideoTiming};
