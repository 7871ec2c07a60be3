//! rho-data: ρ-clip video data without a Burn backend: dataset [`index`]es, frame-exact FFmpeg
//! decoding ([`decode`], feature `video`) and JPEG [`frames`] folders, the ρ-clip [`sampler`]
//! (docs/method.md §3.1), clip [`augment`]ations (§3.2), test-time [`eval_views`] (§5.1), the
//! deterministic multi-threaded [`loader`], counter-based randomness ([`rng`]) that makes every
//! draw a function of (seed, epoch, sample, clip), and the labelled [`synth`]etic dataset of
//! `rho demo`.

pub mod augment;
pub mod dataset;
#[cfg(feature = "video")]
pub mod decode;
pub mod error;
pub mod eval_views;
pub mod file_guard;
pub mod frames;
pub mod index;
pub mod loader;
pub mod rng;
pub mod sampler;
pub mod synth;
pub mod synthetic;

pub use dataset::{DatasetSpec, IndexFormat};
pub use error::DataError;
pub use file_guard::{not_a_regular_file, require_regular_file, with_deadline};
pub use index::{Split, VideoEntry, VideoIndex, VideoSource};
pub use loader::{
    Batch, InOrderIter, LoaderConfig, LoaderPosition, PartialBatch, Shard, ShortVideoPolicy,
    SkippingIter, VideoLoader, ViewMode,
};
pub use sampler::{ClipFrames, ClipPlan, ClipSamplerConfig, VideoTiming};
