//! Where a run's replicas live: one device, several devices of this process, or this process
//! as one rank of an MPI job; and the training call for each.

use anyhow::Result;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use rho_train::{Hooks, Recipe, RunOptions, Trainer};

use super::PretrainArgs;

/// Where a run's replicas live.
pub enum Parallel<D> {
    /// One device per entry, in this process (one entry: no data parallelism).
    Devices(Vec<D>),
    /// This process is one rank of an MPI job, on `device`.
    #[cfg(feature = "mpi")]
    Mpi {
        transport: std::sync::Arc<rho_train::distributed::MpiTransport>,
        device: D,
        rank: usize,
        local_ranks: usize,
    },
}

impl<D> Parallel<D> {
    /// One device, no data parallelism.
    pub fn single(device: D) -> Self {
        Parallel::Devices(vec![device])
    }

    /// This process's (first) device.
    pub fn device(&self) -> &D {
        match self {
            Parallel::Devices(d) => &d[0],
            #[cfg(feature = "mpi")]
            Parallel::Mpi { device, .. } => device,
        }
    }

    /// The replicas for the header (`None`: one device).
    pub fn describe<B: Backend<Device = D>>(&self) -> Option<String> {
        match self {
            Parallel::Devices(d) if d.len() > 1 => Some(format!(
                "{} devices in this process (burn-collective)",
                d.len()
            )),
            #[cfg(feature = "mpi")]
            Parallel::Mpi { transport, .. } => Some(
                rho_train::distributed::Transport::<B>::describe(transport.as_ref()),
            ),
            _ => None,
        }
    }

    /// Replicas that share this machine (its memory, on a CPU backend).
    pub fn replicas_on_this_machine(&self) -> usize {
        match self {
            Parallel::Devices(d) => d.len(),
            #[cfg(feature = "mpi")]
            Parallel::Mpi { local_ranks, .. } => (*local_ranks).max(1),
        }
    }

    /// Devices over all processes.
    pub fn world(&self) -> usize {
        match self {
            Parallel::Devices(d) => d.len(),
            #[cfg(feature = "mpi")]
            Parallel::Mpi { transport, .. } => transport.size(),
        }
    }

    pub fn lead(&self) -> bool {
        match self {
            Parallel::Devices(_) => true,
            #[cfg(feature = "mpi")]
            Parallel::Mpi { rank, .. } => *rank == 0,
        }
    }
}

/// The GPU index of the process with local rank `r`: `r`, unless the site gives each process
/// fewer GPUs (`CUDA_VISIBLE_DEVICES` listing fewer than `r + 1`), then `r` modulo that count
/// (one visible GPU: index 0).
#[cfg(feature = "mpi")]
fn gpu_of_local_rank(r: usize) -> usize {
    let visible = std::env::var("CUDA_VISIBLE_DEVICES")
        .ok()
        .map(|v| v.split(',').filter(|s| !s.trim().is_empty()).count())
        .filter(|n| *n > 0);
    match visible {
        Some(n) if r >= n => r % n,
        _ => r,
    }
}

/// `--devices` as device indices (a count of 1: the `--device` already chosen).
fn device_indices(spec: &str) -> Result<Vec<usize>> {
    let bad = || {
        anyhow::anyhow!(
            "--devices `{spec}`: expected a count (`2`) or a list of GPU indices (`0,2`)"
        )
    };
    if spec.contains(',') {
        spec.split(',')
            .map(|x| x.trim().parse::<usize>().map_err(|_| bad()))
            .collect()
    } else {
        let n: usize = spec.trim().parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        Ok((0..n).collect())
    }
}

/// The replicas of a run: `--devices`, or this process's rank when an MPI launcher started it.
pub fn parallel<D: Clone>(
    a: &PretrainArgs,
    device: D,
    at: impl Fn(usize) -> D,
) -> Result<Parallel<D>> {
    #[cfg(feature = "mpi")]
    if let Some(env) = rho_train::distributed::LaunchEnv::detect().filter(|e| e.size > 1) {
        if a.devices.trim() != "1" {
            anyhow::bail!(
                "--devices {} under an MPI launcher ({} ranks): run one process per device instead (mpirun -np <devices>)",
                a.devices,
                env.size
            );
        }
        let transport = rho_train::distributed::MpiTransport::init(a.collective_timeout_s)?;
        if transport.size() != env.size {
            anyhow::bail!(
                "the launcher started {} processes but MPI sees {} (rank {}): this MPI cannot join the launcher's job (with srun, pick the plugin your Open MPI supports: `srun --mpi=list`, e.g. --mpi=pmix), or the program was not started by the launcher",
                env.size,
                transport.size(),
                transport.rank()
            );
        }
        let _ = device;
        return Ok(Parallel::Mpi {
            rank: transport.rank(),
            transport: std::sync::Arc::new(transport),
            device: at(gpu_of_local_rank(env.local_rank)),
            local_ranks: env.local_size,
        });
    }
    #[cfg(not(feature = "mpi"))]
    if ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"]
        .iter()
        .any(|k| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|n| n > 1)
        })
    {
        anyhow::bail!(
            "this rho was built without MPI; rebuild with `--features mpi` to run under mpirun"
        );
    }
    let idx = device_indices(&a.devices)?;
    if idx.len() == 1 {
        return Ok(Parallel::Devices(vec![device]));
    }
    Ok(Parallel::Devices(idx.into_iter().map(at).collect()))
}

/// Pre-trains on the replicas of `parallel` with `hooks` (run by rank 0); returns rank 0's
/// network.
pub fn train<B: Backend>(
    recipe: &Recipe,
    opts: RunOptions,
    parallel: Parallel<B::Device>,
    collective_timeout_s: f64,
    hooks: &mut impl Hooks<Autodiff<B>>,
) -> Result<rho_objectives::SslNetwork<Autodiff<B>>> {
    Ok(match parallel {
        Parallel::Devices(d) if d.len() == 1 => {
            Trainer::<Autodiff<B>>::new(recipe, &d[0], opts, None)?.run(hooks)?
        }
        Parallel::Devices(d) => {
            let hooks = std::cell::RefCell::new(hooks);
            rho_train::pretrain_data_parallel::<Autodiff<B>>(
                recipe,
                &d,
                opts,
                collective_timeout_s,
                |log| hooks.borrow_mut().on_step(log),
                |epoch, net| hooks.borrow_mut().on_epoch(epoch, net),
            )?
        }
        #[cfg(feature = "mpi")]
        Parallel::Mpi {
            transport,
            device,
            local_ranks,
            rank,
        } => {
            let ctx = rho_train::RankContext {
                transport,
                local_ranks,
            };
            Trainer::<Autodiff<B>>::new(recipe, &device, opts, Some(&ctx))
                .and_then(|t| t.run(hooks))
                .map_err(|e| rho_train::TrainError::Rank {
                    rank,
                    error: Box::new(e),
                })?
        }
    })
}
