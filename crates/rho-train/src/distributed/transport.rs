//! `Transport`: the engine underneath data parallelism, reduced to what rho needs from it.
//!
//! One primitive, an element-wise sum over every rank, is enough: gradients are averaged with
//! it, parameters are broadcast with it (the root contributes, the rest add zeros), and
//! all-gathers are sums of zero-padded blocks. Two engines implement it:
//! [`LocalTransport`](super::LocalTransport) (burn-collective, the devices of one process) and
//! `MpiTransport` (Open MPI between processes and nodes, feature `mpi`).

use burn::tensor::{backend::Backend, Tensor};

/// A failed collective: which rank, which call, and why.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CollectiveError {
    #[error("rank {rank}: collective #{seq} ({call}) failed: {reason}")]
    Failed {
        rank: usize,
        seq: u64,
        call: String,
        reason: String,
    },
    #[error("rank {rank}: collective #{seq} ({call}) timed out after {waited_s:.0} s waiting for {waiting_for}; a peer crashed, hangs, or runs a different recipe (raise the limit with --collective-timeout-s if a step is really that slow)")]
    Timeout {
        rank: usize,
        seq: u64,
        call: String,
        waited_s: f64,
        waiting_for: String,
    },
    #[error("{0}")]
    Setup(String),
}

/// An all-reduce between the ranks of one data-parallel run. Every rank must make the same
/// calls in the same order, with tensors of the same shape.
pub trait Transport<B: Backend>: Send + Sync {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Element-wise sum over the ranks; `call` names the operation in errors; `timed`: whether
    /// the collective timeout applies.
    fn all_reduce(
        &self,
        t: Tensor<B, 1>,
        call: &str,
        timed: bool,
    ) -> Result<Tensor<B, 1>, CollectiveError>;
    /// Element-wise sum over the ranks, under the collective timeout.
    fn all_reduce_sum(&self, t: Tensor<B, 1>, call: &str) -> Result<Tensor<B, 1>, CollectiveError> {
        self.all_reduce(t, call, true)
    }
    /// A sum that may wait without limit: where the ranks wait for rank 0's own work (the epoch
    /// hook, e.g. a kNN monitor), which the timeout must not mistake for a dead peer.
    fn all_reduce_sum_untimed(
        &self,
        t: Tensor<B, 1>,
        call: &str,
    ) -> Result<Tensor<B, 1>, CollectiveError> {
        self.all_reduce(t, call, false)
    }
    /// What this transport is, for logs ("burn-collective, 2 devices", "Open MPI 4.1, 4 ranks").
    fn describe(&self) -> String;
}
