//! rho-model: 3D CNN video backbones in Burn, numerically identical to their PyTorch references.
//!
//! A network is described by a [`ResNet3dConfig`] (presets: `slow_r50`, `slow_r101`, `r3d_18`,
//! `r2plus1d_18` and small variants) and built from parts: [`Stem`], [`ResStage`], [`ResBlock`],
//! [`ClassificationHead`]. [`weights`] moves parameters to and from pytorchvideo, PySlowFast and
//! torchvision state dicts.

pub mod batch_groups;
pub mod batch_stats_sync;
pub mod block;
pub mod config;
pub mod conv;
pub mod cpu_conv;
pub mod cpu_norm;
pub mod error;
pub mod head;
pub mod host_backend;
pub mod norm;
pub mod precision;
pub mod presets;
pub mod resnet;
pub mod stage;
pub mod stem;
pub mod weights;

pub use batch_groups::{with_batch_groups, BatchGroups, GroupStatsReduce};
pub use batch_stats_sync::{with_batch_stats_sync, BatchStatsSync};
pub use block::{BlockSpec, ResBlock};
pub use config::{BlockKind, ConvFactor, ResNet3dConfig, StageConfig, StemConfig};
pub use conv::ConvBn;
pub use cpu_conv::ConvStrategy;
pub use cpu_norm::NormStrategy;
pub use error::ModelError;
pub use head::ClassificationHead;
pub use norm::{BatchNorm, BatchNorm3d};
pub use precision::Precision;
pub use presets::Preset;
pub use resnet::ResNet3d;
pub use stage::ResStage;
pub use stem::Stem;
