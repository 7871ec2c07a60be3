//! `MpiTransport`: data parallelism between processes (one per device, on one or many nodes)
//! over the system's MPI, launched by `mpirun` or Slurm's `srun`.
//!
//! Tensors are staged through host memory: gradients travel as one flat f32 buffer per call
//! (see [`average_gradients`](super::average_gradients)). A watchdog thread reports a call
//! that waits past the timeout (a peer died or hangs: rank, call number, what) instead of
//! letting the job hang; MPI cannot cancel a collective, so the report is followed by
//! `MPI_Abort`, which ends every rank (as a crash of any rank does). Blocking all-reduces are
//! used because Open MPI's non-blocking ones were slower on gradient-sized buffers.

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
            (
                "OMPI_COMM_WORLD_RANK",
                "OMPI_COMM_WORLD_SIZE",
                "OMPI_COMM_WORLD_LOCAL_RANK",
                "OMPI_COMM_WORLD_LOCAL_SIZE",
            ),
            ("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
            (
                "MV2_COMM_WORLD_RANK",
                "MV2_COMM_WORLD_SIZE",
                "MV2_COMM_WORLD_LOCAL_RANK",
                "MV2_COMM_WORLD_LOCAL_SIZE",
            ),
            (
                "SLURM_PROCID",
                "SLURM_NTASKS",
                "SLURM_LOCALID",
                "SLURM_NTASKS_PER_NODE",
            ),
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
    seq: AtomicU64,
    library: String,
    /// The call in progress, watched by a thread that aborts the job past the timeout.
    in_flight: std::sync::Arc<std::sync::Mutex<Option<(u64, String, Instant)>>>,
}

/// Wakes every second; when the call in flight has run past `timeout`, reports it and aborts
/// the job (MPI cannot cancel a collective; the blocking all-reduce is several times faster
/// than a polled non-blocking one on large buffers, so the deadline lives here).
fn watchdog(
    rank: usize,
    timeout: Duration,
    in_flight: std::sync::Arc<std::sync::Mutex<Option<(u64, String, Instant)>>>,
) {
    std::thread::spawn(move || loop {
        std::thread::sleep(Duration::from_secs(1).min(timeout));
        let late = in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .filter(|(_, _, since)| since.elapsed() > timeout);
        if let Some((seq, call, since)) = late {
            let e = CollectiveError::Timeout {
                rank,
                seq,
                call,
                waited_s: since.elapsed().as_secs_f64(),
                waiting_for: "the other ranks (their logs name the first failure)".into(),
            };
            eprintln!("error: {e}");
            SimpleCommunicator::world().abort(124);
        }
    });
}

impl MpiTransport {
    /// Starts MPI (once per process). A panic on any rank then aborts the whole job with its
    /// message, instead of leaving the other ranks waiting forever.
    pub fn init(timeout_s: f64) -> Result<Self, CollectiveError> {
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Multiple)
            .ok_or_else(|| {
                CollectiveError::Setup("MPI is already initialised in this process".into())
            })?;
        if threading != mpi::Threading::Multiple {
            return Err(CollectiveError::Setup(format!(
                "this MPI grants only {threading:?} threading; rho needs MPI_THREAD_MULTIPLE (its timeout watchdog calls MPI_Abort from another thread); use Open MPI 4 or newer"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let library = mpi::environment::library_version()
            .map(|v| {
                v.trim_end_matches('\0')
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|_| "MPI".into());
        if size > 1 {
            let default_hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                default_hook(info);
                // Only the main thread trains (and holds MPI); a decode thread's panic is a bad
                // video, which the loader replaces.
                if std::thread::current().name() == Some("main") {
                    eprintln!("rank {rank}: aborting the MPI job after this panic");
                    SimpleCommunicator::world().abort(101);
                }
            }));
        }
        *UNIVERSE.lock().unwrap_or_else(|e| e.into_inner()) = Some(universe);
        let in_flight = std::sync::Arc::new(std::sync::Mutex::new(None));
        if size > 1 && timeout_s.is_finite() {
            watchdog(
                rank,
                Duration::from_secs_f64(timeout_s.max(1.0)),
                in_flight.clone(),
            );
        }
        Ok(Self {
            rank,
            size,
            seq: AtomicU64::new(0),
            library,
            in_flight,
        })
    }
}

impl MpiTransport {
    /// This process's rank in MPI_COMM_WORLD.
    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn size(&self) -> usize {
        self.size
    }
}

impl<B: Backend> Transport<B> for MpiTransport {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.size
    }
    fn all_reduce(
        &self,
        t: Tensor<B, 1>,
        call: &str,
        timed: bool,
    ) -> Result<Tensor<B, 1>, CollectiveError> {
        self.reduce(t, call, timed)
    }
    fn describe(&self) -> String {
        format!("{} over {} processes", self.library, self.size)
    }
}

impl MpiTransport {
    fn reduce<B: Backend>(
        &self,
        t: Tensor<B, 1>,
        call: &str,
        timed: bool,
    ) -> Result<Tensor<B, 1>, CollectiveError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let device = t.device();
        let n = t.dims()[0];
        // Host staging without extra copies when the tensor already holds f32.
        let data = t.into_data();
        let data = if data.dtype == burn::tensor::DType::F32 {
            data
        } else {
            data.convert::<f32>()
        };
        let send = data
            .as_slice::<f32>()
            .map_err(|e| CollectiveError::Failed {
                rank: self.rank,
                seq,
                call: call.to_string(),
                reason: format!("reading the tensor to the host: {e:?}"),
            })?;
        let mut recv = vec![0f32; n];
        // A handle to MPI_COMM_WORLD (the communicator type is not Send, the transport is).
        let comm = SimpleCommunicator::world();
        if timed {
            *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((seq, call.to_string(), Instant::now()));
        }
        comm.all_reduce_into(send, &mut recv[..], SystemOperation::sum());
        *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(Tensor::from_data(TensorData::new(recv, [n]), &device))
    }
}
