//! `Collectives`: the seam through which every whole-batch computation crosses devices.
//!
//! SimCLR's negatives, SwAV's Sinkhorn sums and MoCo's keys need the global batch. They call
//! this trait; a single device uses [`SingleDevice`] (the identity) and the scale-out engine
//! supplies a real implementation without the objectives changing.

use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};
use rho_model::GroupStatsReduce;

pub trait Collectives<B: Backend>: Send + Sync {
    /// Number of participating devices.
    fn world_size(&self) -> usize;
    /// This device's index in `0..world_size`.
    fn rank(&self) -> usize;
    /// Element-wise sum over devices (no gradient flows through it).
    fn all_reduce_sum(&self, t: Tensor<B, 2>) -> Tensor<B, 2>;
    /// Rows of every device concatenated in rank order (no gradient flows through it).
    fn all_gather(&self, t: Tensor<B, 2>) -> Tensor<B, 2>;
    /// Like `all_gather`, but the local rows keep their gradient: the backward pass sums the
    /// gradients of all devices and keeps the local slice (as SimCLR's `diff_gather`).
    fn all_gather_with_grad(&self, t: Tensor<B, 2>) -> Tensor<B, 2>;
    /// Sums over the devices for BatchNorm statistics pooled by groups (MoCo's shuffle-BN
    /// across ranks); `None` on one device.
    fn group_stats_reduce(&self) -> Option<Arc<dyn GroupStatsReduce>> {
        None
    }
}

/// One device: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleDevice;

impl<B: Backend> Collectives<B> for SingleDevice {
    fn world_size(&self) -> usize {
        1
    }
    fn rank(&self) -> usize {
        0
    }
    fn all_reduce_sum(&self, t: Tensor<B, 2>) -> Tensor<B, 2> {
        t
    }
    fn all_gather(&self, t: Tensor<B, 2>) -> Tensor<B, 2> {
        t
    }
    fn all_gather_with_grad(&self, t: Tensor<B, 2>) -> Tensor<B, 2> {
        t
    }
}
