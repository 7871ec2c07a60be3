//! `BatchStatsSync`: the seam through which [`BatchNorm`](crate::BatchNorm) becomes
//! synchronised BatchNorm.
//!
//! A module cannot hold a communicator (modules are records, cloned and saved), and the same
//! network runs with and without synchronisation (pre-training vs evaluation). So the training
//! engine installs a sync group for the duration of a step with [`with_batch_stats_sync`], on the
//! thread that runs that device's step, and every BatchNorm in train mode on that thread gathers
//! its statistics through it. Outside such a scope BatchNorm is per-device, as before.

use std::any::Any;
use std::cell::RefCell;
use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};

/// Gathers one row of statistics from every device of this device's sync group.
///
/// The row is a `Tensor<B, 2>` of shape `[1, k]` of the backend running the step, passed as
/// `Box<dyn Any>` because BatchNorm is generic over backends and the implementation is not; the
/// result must be a `Tensor<B, 2>` of shape `[group_size, k]`, rows in rank order, through which
/// gradients flow back to every device's row (its backward pass is itself a collective).
pub trait BatchStatsSync: Send + Sync {
    /// Devices whose statistics are pooled (the paper's "SyncBN 8" is 8).
    fn group_size(&self) -> usize;
    /// Rows of the group, `[group_size, k]`, boxed like the input.
    fn gather(&self, row: Box<dyn Any>) -> Box<dyn Any>;
}

thread_local! {
    static ACTIVE: RefCell<Option<Arc<dyn BatchStatsSync>>> = const { RefCell::new(None) };
}

/// Runs `f` with BatchNorm synchronised through `sync` on this thread (restoring what was there
/// before, also when `f` panics).
pub fn with_batch_stats_sync<R>(sync: Arc<dyn BatchStatsSync>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<dyn BatchStatsSync>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let prev = self.0.take();
            ACTIVE.with(|a| *a.borrow_mut() = prev);
        }
    }
    let prev = ACTIVE.with(|a| a.borrow_mut().replace(sync));
    let _restore = Restore(prev);
    f()
}

/// Whether BatchNorm on this thread is synchronised with other devices.
pub(crate) fn is_active() -> bool {
    ACTIVE.with(|a| a.borrow().as_ref().is_some_and(|s| s.group_size() > 1))
}

/// The statistics rows of the active sync group, or `None` when BatchNorm is per-device. The
/// row is built only when there is a group to send it to (a GPU backend would otherwise compile
/// and run its concatenation for nothing).
pub(crate) fn gather_rows<B: Backend>(row: impl FnOnce() -> Tensor<B, 2>) -> Option<Tensor<B, 2>> {
    let sync = ACTIVE.with(|a| a.borrow().clone())?;
    if sync.group_size() <= 1 {
        return None;
    }
    let out = sync.gather(Box::new(row()));
    match out.downcast::<Tensor<B, 2>>() {
        Ok(t) => Some(*t),
        Err(_) => panic!(
            "SyncBatchNorm: the active sync group works on another backend than this network ({}); install it only around the training step of its own backend",
            std::any::type_name::<B>()
        ),
    }
}
