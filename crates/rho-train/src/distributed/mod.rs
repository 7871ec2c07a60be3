//! Data parallelism: several devices (one process) or several processes (MPI, many nodes)
//! training one replica each on a shard of every global batch.
//!
//! - [`Transport`]: the engine underneath (an all-reduce sum): [`LocalTransport`] over
//!   burn-collective in one process, `MpiTransport` over Open MPI (feature `mpi`).
//! - [`DeviceGroup`]: the objectives' [`Collectives`](rho_objectives::Collectives) and
//!   SyncBatchNorm's [`BatchStatsSync`](rho_model::BatchStatsSync) on top of a transport, with
//!   differentiable gathers ([`all_reduce_with_grad`]).
//! - [`average_gradients`], [`broadcast_from_rank0`]: keeping the replicas identical.
//! - [`pretrain_data_parallel`]: the in-process driver.

mod differentiable;
mod group;
mod in_process;
mod local;
#[cfg(feature = "mpi")]
mod mpi;
mod replicas;
mod transport;

pub use differentiable::{all_reduce_with_grad, ReduceFn};
pub use group::DeviceGroup;
pub use in_process::pretrain_data_parallel;
pub use local::{LocalTransport, Watch};
#[cfg(feature = "mpi")]
pub use mpi::{finish_mpi, LaunchEnv, MpiTransport};
pub use replicas::{
    average_gradients, broadcast_bytes_from_rank0, broadcast_from_rank0, check_agreement,
    check_identical,
};
pub use transport::{CollectiveError, Transport};
