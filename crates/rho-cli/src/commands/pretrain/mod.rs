//! `rho pretrain --config C`: self-supervised pre-training from a recipe. Metrics go to
//! `OUTPUT/metrics.jsonl` (one JSON object per step) and the online backbone to
//! `OUTPUT/backbone.safetensors` at the end; checkpoints `OUTPUT/ckpt_*.rho` every N steps, and
//! `--resume` continues exactly where one left off.

mod hooks;
mod job;
mod parallel;
mod reporter;

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::Args;
use rho_train::{Recipe, RunOptions};

pub use hooks::KnnMonitor;
pub use job::PretrainJob;
pub use parallel::Parallel;

use crate::backend::BackendKind;

#[derive(Args, Debug)]
pub struct PretrainArgs {
    /// The recipe (see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a recipe field, e.g. `--set data.rho=4` (repeatable; logged).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Stop after this many steps (counting resumed ones).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Write a checkpoint every N steps into the output folder (N ≥ 1).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: u64,
    /// Refresh the PNG plots every N steps.
    #[arg(long, default_value_t = 50)]
    pub plot_every: usize,
    /// Checkpoints kept.
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Continue from a checkpoint; `--resume` alone (or `latest`) takes the newest in the output
    /// folder that verifies (skipping corrupt ones, with a message); `auto` takes it when there
    /// is one and starts fresh otherwise (requeued jobs).
    #[arg(long, num_args = 0..=1, default_missing_value = "latest")]
    pub resume: Option<PathBuf>,
    /// Resume although the recipe's batch, data, schedule or method constants differ from the
    /// checkpoint's (the run card records the changes). A different network or method never
    /// resumes.
    #[arg(long)]
    pub allow_recipe_change: bool,
    /// Refuse to start when the step's memory estimate exceeds this (default on CPU backends:
    /// the memory the OS has available; GPUs: no check unless given).
    #[arg(long)]
    pub memory_limit_gib: Option<f64>,
    /// kNN monitor: every N epochs, kNN top-1 of the online backbone on the train/test lists of
    /// `--knn-config` (an evaluation recipe), logged to metrics.jsonl and knn.png.
    #[arg(long, requires = "knn_config")]
    pub knn_every: Option<u64>,
    #[arg(long)]
    pub knn_config: Option<PathBuf>,
    /// Data parallelism in this process: a device count (`2`: GPUs 0 and 1; on a CPU backend,
    /// replicas sharing the CPU) or a list of GPU indices (`0,2`). Each device trains on its
    /// shard of the global batch. Across processes and nodes, launch under `mpirun`/`srun`
    /// instead (one process per device; see `rho launch`).
    #[arg(long, default_value = "1")]
    pub devices: String,
    /// Seconds a rank may wait in a collective (a peer crashed or hangs) before the run stops
    /// with an error naming the rank and the call.
    #[arg(long, default_value_t = 1800.0)]
    pub collective_timeout_s: f64,
}

pub fn run<B: Backend>(
    a: &PretrainArgs,
    backend: BackendKind,
    device: B::Device,
    at: impl Fn(usize) -> B::Device,
) -> Result<()> {
    let parallel = parallel::parallel(a, device, at)?;
    let recipe = Recipe::load(&a.config, &a.overrides)?;
    let resume = resume_path(a, &recipe)?;
    let memory_limit = a
        .memory_limit_gib
        .map(|g| g * (1u64 << 30) as f64)
        .or_else(|| {
            // On a CPU backend the replicas of this machine share its memory.
            backend
                .is_cpu()
                .then(rho_train::memory::available_host_memory)
                .flatten()
                .map(|m| m / parallel.replicas_on_this_machine() as f64)
        });
    let monitor = match (a.knn_every, &a.knn_config) {
        (Some(every), Some(p)) => Some(KnnMonitor {
            every: every.max(1),
            recipe: rho_train::eval::EvalRecipe::load(p, &[])?,
        }),
        _ => None,
    };
    let job = PretrainJob {
        source: a.config.display().to_string(),
        overrides: a.overrides.clone(),
        opts: RunOptions {
            max_steps: a.max_steps,
            checkpoint_every: Some(a.checkpoint_every as usize),
            keep: a.keep,
            resume,
            memory_limit,
            allow_recipe_change: a.allow_recipe_change,
        },
        plot_every: a.plot_every,
        monitor,
        backend,
        collective_timeout_s: a.collective_timeout_s,
        recipe,
    };
    job.run::<B>(parallel)
}

/// `--resume PATH`, `latest` (the newest checkpoint that verifies, which must exist) or `auto`
/// (the newest that verifies, if there is one).
fn resume_path(a: &PretrainArgs, recipe: &Recipe) -> Result<Option<PathBuf>> {
    let Some(p) = &a.resume else { return Ok(None) };
    if p.as_os_str() != "auto" && p.as_os_str() != "latest" {
        return Ok(Some(p.clone()));
    }
    let all = rho_train::checkpoint::list_checkpoints(&recipe.output);
    if all.is_empty() && p.as_os_str() == "auto" {
        return Ok(None); // a first start
    }
    let good = newest_good_checkpoint(&recipe.output);
    if good.is_none() {
        // Starting afresh would empty the metrics and let the new checkpoints rotate the old
        // ones away: refuse instead.
        anyhow::bail!(
            "--resume: {} holds {} checkpoint(s) but none verifies; move them away to start afresh, or resume from one with --resume PATH",
            recipe.output.display(),
            all.len()
        );
    }
    Ok(good)
}

/// The newest checkpoint of `dir` that reads and verifies; the ones skipped are named.
fn newest_good_checkpoint(dir: &std::path::Path) -> Option<PathBuf> {
    for p in rho_train::checkpoint::list_checkpoints(dir)
        .into_iter()
        .rev()
    {
        match rho_train::Checkpoint::read(&p) {
            Ok(_) => return Some(p),
            Err(e) => eprintln!("  skipping {e}; trying the one before"),
        }
    }
    None
}
