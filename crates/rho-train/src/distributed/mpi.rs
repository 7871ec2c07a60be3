//! `MpiTransport`: data parallelism between processes (one per device, on one or many nodes)
//! over the system's MPI, launched by `mpirun` or Slurm's `srun`.
//!
//! Tensors are staged through host memory: gradients travel as one flat f32 buffer per call
//! (see [`average_gradients`](super::average_gradients)). Calls are non-blocking MPI
//! all-reduces polled against a deadline, so a peer that died or hangs is reported (rank, call
//! number, what) instead of hanging the job; MPI cannot cancel a collective, so the report is
//! followed by `MPI_Abort`, which ends every rank (as a crash of any rank does).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use burn::tensor::{backend::Backend, Tensor, TensorData};
use mpi::collective::SystemOperation;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use super::transport::{CollectiveError, Transport};

/// Rank and size as the launcher set them, read before MPI starts (Open MPI's mpirun, PMIx,
/// MPICH/Intel MPI's Hydra, MVAPICH2, Slurm's srun).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchEnv {
    pub rank: usize,
    pub size: usize,
    /// Rank among the processes of this node (picks the GPU).
    pub local_rank: usize,
    pub local_size: usize,
}

impl LaunchEnv {
    /// `Some` when this process was started by an MPI launcher.
    pub fn detect() -> Option<Self> {
        fn get(k: &str) -> Option<usize> {
            std::env::var(k).ok()?.trim().parse().ok()
        }
        const PAIRS: &[(&str, &str, &str, &str)] = &[
            ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"),
            ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
            ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_SIZE"),
            ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"),
        ];
        PAIRS.iter().find_map(|(r, s, lr, ls)| {
            let (rank, size) = (get(r)?, get(s)?);
            Some(Self {
                rank,
                size,
                local_rank: get(lr).unwrap_or(0),
                local_size: get(ls).unwrap_or(1),
            })
        })
    }
}

/// MPI's universe lives until [`finish_mpi`]: dropping it finalises MPI, which must not happen
/// on an error path while the other ranks wait in a collective (MPI_Finalize would hang there).
static UNIVERSE: std::sync::Mutex<Option<mpi::environment::Universe>> = std::sync::Mutex::new(None);

/// Ends MPI at process exit: finalises after a successful run; after a failure on a job of
/// several ranks, aborts the job (so the other ranks stop instead of waiting forever). Call it
/// after printing the error.
pub fn finish_mpi(success: bool) {
    let mut u = UNIVERSE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(universe) = u.take() {
        if !success && universe.world().size() > 1 {
            universe.world().abort(1);
        }
        drop(universe);
    }
}

pub struct MpiTransport {
    rank: usize,
    size: usize,
    timeout: Duration,
    seq: AtomicU64,
    library: String,
}

impl MpiTransport {
    /// Starts MPI (once per process). A panic on any rank then aborts the whole job with its
    /// message, instead of leaving the other ranks waiting forever.
    pub fn init(timeout_s: f64) -> Result<Self, CollectiveError> {
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Multiple)
            .ok_or_else(|| CollectiveError::Setup("MPI is already initialised in this process".into()))?;
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let library = mpi::environment::library_version()
            .map(|v| v.trim_end_matches('\0').split(',').next().unwrap_or("").trim().to_string())
            .unwrap_or_else(|_| "MPI".into());
        if size > 1 {
            let default_hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                default_hook(info);
                eprintln!("rank {rank}: aborting the MPI job after this panic");
                SimpleCommunicator::world().abort(101);
            }));
        }
        *UNIVERSE.lock().unwrap_or_else(|e| e.into_inner()) = Some(universe);
        Ok(Self {
            rank,
            size,
            timeout: Duration::from_secs_f64(timeout_s.max(1.0)),
            seq: AtomicU64::new(0),
            library,
        })
    }
}

impl<B: Backend> Transport<B> for MpiTransport {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.size
    }
    fn all_reduce_sum(&self, t: Tensor<B, 1>, call: &str) -> Result<Tensor<B, 1>, CollectiveError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let device = t.device();
        let n = t.dims()[0];
        let send = t
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| CollectiveError::Failed {
                rank: self.rank,
                seq,
                call: call.to_string(),
                reason: format!("reading the tensor to the host: {e:?}"),
            })?;
        let mut recv = vec![0f32; n];
        // A handle to MPI_COMM_WORLD (the communicator type is not Send, the transport is).
        let comm = SimpleCommunicator::world();
        let started = Instant::now();
        mpi::request::scope(|scope| {
            let mut req =
                comm.immediate_all_reduce_into(scope, &send[..], &mut recv[..], SystemOperation::sum());
            let mut polls = 0u32;
            loop {
                match req.test() {
                    Ok(_) => break,
                    Err(r) => req = r,
                }
                if started.elapsed() > self.timeout {
                    let e = CollectiveError::Timeout {
                        rank: self.rank,
                        seq,
                        call: call.to_string(),
                        waited_s: started.elapsed().as_secs_f64(),
                        waiting_for: "the other ranks (check their logs: the first to fail names the cause)".into(),
                    };
                    eprintln!("error: {e}");
                    comm.abort(124);
                }
                polls += 1;
                if polls > 1000 {
                    std::thread::sleep(Duration::from_micros(50));
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        Ok(Tensor::from_data(TensorData::new(recv, [n]), &device))
    }
    fn describe(&self) -> String {
        format!("{} over {} processes", self.library, self.size)
    }
}
