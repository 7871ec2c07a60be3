//! `BatchGroups`: BatchNorm statistics pooled over a chosen grouping of the (global) batch
//! instead of over the device's batch: MoCo's shuffle-BN without moving a single clip.
//!
//! Shuffle-BN (docs/method.md, "ρMoCo") normalises the key encoder's activations with the
//! statistics of a random group of samples, different from the group the query encoder used.
//! The released code gets there by gathering the key clips, permuting them and scattering a
//! slice to each device; the statistics are all that changes. Here each device keeps its clips
//! and only the per-group sums cross devices: two all-reduces of [groups, channels] per
//! BatchNorm (sums, then centred squares), no gradient. On one device the groups are sub-batches
//! and nothing crosses.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor, TensorData};

/// Element-wise sums over every device, for grouped statistics (no gradient flows).
///
/// The argument and result are a `Tensor<B, 2>` of the backend running the forward pass, boxed
/// because BatchNorm is generic over backends and the implementation is not.
pub trait GroupStatsReduce: Send + Sync {
    fn all_reduce(&self, t: Box<dyn Any>) -> Box<dyn Any>;
}

/// Which group each sample of this device's batch belongs to.
#[derive(Clone)]
pub struct BatchGroups {
    /// Group index of each local sample, `< groups`.
    pub of_sample: Vec<usize>,
    pub groups: usize,
    /// Sums the per-group partial sums over devices; `None` on one device.
    pub reduce: Option<Arc<dyn GroupStatsReduce>>,
}

thread_local! {
    static ACTIVE: RefCell<Option<BatchGroups>> = const { RefCell::new(None) };
}

/// Runs `f` with every BatchNorm in train mode on this thread normalising by `groups`
/// (restoring what was there before, also when `f` panics).
pub fn with_batch_groups<R>(groups: BatchGroups, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<BatchGroups>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            ACTIVE.with(|a| *a.borrow_mut() = prev);
        }
    }
    let prev = ACTIVE.with(|a| a.borrow_mut().replace(groups));
    let _restore = Restore(prev);
    f()
}

pub(crate) fn active() -> Option<BatchGroups> {
    ACTIVE.with(|a| a.borrow().clone())
}

impl BatchGroups {
    /// The one-hot assignment [groups, n] (row g: the samples of group g).
    pub(crate) fn assignment<B: Backend>(&self, device: &B::Device) -> Tensor<B, 2> {
        let n = self.of_sample.len();
        let mut a = vec![0f32; self.groups * n];
        for (i, &g) in self.of_sample.iter().enumerate() {
            a[g * n + i] = 1.0;
        }
        Tensor::from_data(TensorData::new(a, [self.groups, n]), device)
    }

    /// `t` summed over devices (unchanged on one device).
    pub(crate) fn sum_over_devices<B: Backend>(&self, t: Tensor<B, 2>) -> Tensor<B, 2> {
        let Some(r) = &self.reduce else {
            return t;
        };
        match r
            .all_reduce(Box::new(t.detach()))
            .downcast::<Tensor<B, 2>>()
        {
            Ok(t) => *t,
            Err(_) => panic!(
                "grouped BatchNorm: the reducer works on another backend than this network ({})",
                std::any::type_name::<B>()
            ),
        }
    }
}
