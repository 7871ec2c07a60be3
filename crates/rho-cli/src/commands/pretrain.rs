//! `rho pretrain --config C`: self-supervised pre-training from a recipe. Metrics go to
//! `OUTPUT/metrics.jsonl` (one JSON object per step) and the online backbone to
//! `OUTPUT/backbone.safetensors` at the end; checkpoints `OUTPUT/ckpt_*.rho` every N steps, and
//! `--resume` continues exactly where one left off.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rho_model::weights::{save_safetensors, Naming};
use rho_train::{Recipe, RunOptions};

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
    /// Write a checkpoint every N steps into the output folder.
    #[arg(long, default_value_t = 500)]
    pub checkpoint_every: usize,
    /// Refresh the PNG plots every N steps.
    #[arg(long, default_value_t = 50)]
    pub plot_every: usize,
    /// Checkpoints kept.
    #[arg(long, default_value_t = 3)]
    pub keep: usize,
    /// Continue from a checkpoint; `--resume` alone (or `latest`) takes the newest in the output
    /// folder; `auto` takes it when there is one and starts fresh otherwise (requeued jobs).
    #[arg(long, num_args = 0..=1, default_missing_value = "latest")]
    pub resume: Option<PathBuf>,
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
    /// Replicas that share this machine (its memory, on a CPU backend).
    fn replicas_on_this_machine(&self) -> usize {
        match self {
            Parallel::Devices(d) => d.len(),
            #[cfg(feature = "mpi")]
            Parallel::Mpi { local_ranks, .. } => (*local_ranks).max(1),
        }
    }

    /// Devices over all processes.
    fn world(&self) -> usize {
        match self {
            Parallel::Devices(d) => d.len(),
            #[cfg(feature = "mpi")]
            Parallel::Mpi { transport, .. } => transport.size(),
        }
    }

    fn lead(&self) -> bool {
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
fn parallel<D: Clone>(a: &PretrainArgs, device: D, at: impl Fn(usize) -> D) -> Result<Parallel<D>> {
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

/// The kNN monitor of a run: every `every` epochs on `recipe`'s lists.
pub struct KnnMonitor {
    pub every: u64,
    pub recipe: rho_train::eval::EvalRecipe,
}

pub fn run<B: Backend>(
    a: &PretrainArgs,
    backend: &str,
    device: B::Device,
    at: impl Fn(usize) -> B::Device,
) -> Result<()> {
    let parallel = parallel(a, device, at)?;
    let recipe = Recipe::load(&a.config, &a.overrides)?;
    let resume = match &a.resume {
        None => None,
        Some(p) if p.as_os_str() == "auto" => {
            rho_train::checkpoint::list_checkpoints(&recipe.output).pop()
        }
        Some(p) if p.as_os_str() != "latest" => Some(p.clone()),
        Some(_) => Some(
            rho_train::checkpoint::list_checkpoints(&recipe.output)
                .pop()
                .with_context(|| {
                    format!("--resume: no checkpoint in {}", recipe.output.display())
                })?,
        ),
    };
    let opts = RunOptions {
        max_steps: a.max_steps,
        checkpoint_every: Some(a.checkpoint_every),
        keep: a.keep,
        resume,
        memory_limit: a
            .memory_limit_gib
            .map(|g| g * (1u64 << 30) as f64)
            .or_else(|| {
                // On a CPU backend the replicas of this machine share its memory.
                matches!(backend, "flex" | "ndarray")
                    .then(rho_train::memory::available_host_memory)
                    .flatten()
                    .map(|m| m / parallel.replicas_on_this_machine() as f64)
            }),
    };
    let monitor = match (a.knn_every, &a.knn_config) {
        (Some(every), Some(p)) => Some(KnnMonitor {
            every: every.max(1),
            recipe: rho_train::eval::EvalRecipe::load(p, &[])?,
        }),
        _ => None,
    };
    execute::<B>(
        &recipe,
        &a.config.display().to_string(),
        &a.overrides,
        opts,
        a.plot_every,
        monitor,
        backend,
        parallel,
        a.collective_timeout_s,
    )
}

#[allow(clippy::too_many_arguments)]
/// Runs `recipe` with the run card, metrics, plots and progress bar, and writes the online
/// backbone to `OUTPUT/backbone.safetensors`.
pub fn execute<B: Backend>(
    recipe: &Recipe,
    source: &str,
    overrides: &[String],
    opts: RunOptions,
    plot_every: usize,
    monitor: Option<KnnMonitor>,
    backend: &str,
    parallel: Parallel<B::Device>,
    collective_timeout_s: f64,
) -> Result<()> {
    let recipe = recipe.clone();
    if !parallel.lead() {
        // Ranks other than 0 train silently: rank 0 logs, plots, checkpoints and saves.
        return run_rank::<B>(&recipe, opts, parallel);
    }
    let device = match &parallel {
        Parallel::Devices(d) => d[0].clone(),
        #[cfg(feature = "mpi")]
        Parallel::Mpi { device, .. } => device.clone(),
    };
    std::fs::create_dir_all(&recipe.output)
        .with_context(|| format!("cannot create {}", recipe.output.display()))?;
    let s = recipe.schedule();
    eprintln!(
        "rho pretrain {}: {} on {}, ρ = {}, {}×{} at {}², global batch {} for {} epochs, backend {backend}",
        recipe.name,
        format!("{:?}", recipe.method.kind).to_lowercase(),
        recipe.model.arch,
        recipe.data.rho,
        recipe.data.frames,
        recipe.data.stride,
        recipe.data.crop,
        recipe.batch,
        recipe.epochs
    );
    eprintln!(
        "  learning rate: {} at batch {} scaled linearly to {:.4} at batch {}; warm-up {} epochs from {:.5}",
        recipe.optim.base_lr, recipe.optim.reference_batch, s.base_lr, recipe.batch, s.warmup_epochs, s.warmup_start
    );
    for o in overrides {
        eprintln!("  override: {o}");
    }
    match &parallel {
        Parallel::Devices(d) if d.len() > 1 => eprintln!(
            "  data parallel: {} devices in this process (burn-collective), {} videos each, SyncBN group {}",
            d.len(),
            recipe.batch / d.len(),
            recipe.model.sync_bn.group_size(d.len()).unwrap_or(1)
        ),
        #[cfg(feature = "mpi")]
        Parallel::Mpi { transport, .. } => {
            let w = rho_train::distributed::Transport::<B>::world_size(transport.as_ref());
            eprintln!(
                "  data parallel: {}, {} videos per rank, SyncBN group {}",
                rho_train::distributed::Transport::<B>::describe(transport.as_ref()),
                recipe.batch / w,
                recipe.model.sync_bn.group_size(w).unwrap_or(1)
            )
        }
        _ => {}
    }
    // The run card: the resolved recipe, next to the metrics.
    let card = format!(
        "# rho {} ({backend}), run card of {}\n# effective global batch {} videos × {} views; LR {} × {}/{} = {:.5}\n{}",
        env!("CARGO_PKG_VERSION"),
        source,
        recipe.batch,
        recipe.data.rho.max(2),
        recipe.optim.base_lr,
        recipe.batch,
        recipe.optim.reference_batch,
        s.base_lr,
        toml::to_string(&recipe).unwrap_or_default()
    );
    rho_model::weights::write_atomically(&recipe.output.join("run_card.toml"), card.as_bytes())
        .with_context(|| format!("cannot write the run card in {}", recipe.output.display()))?;
    let resume = opts.resume.clone();
    if let Some(p) = &resume {
        eprintln!("  resuming from {}", p.display());
    }
    let metrics_path = recipe.output.join("metrics.jsonl");
    // Appending keeps the history of a resumed run.
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(resume.is_some())
        .write(true)
        .truncate(resume.is_none())
        .open(&metrics_path)
        .with_context(|| format!("cannot write {}", metrics_path.display()))?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut write_err = None;
    let (mut wait_total, mut step_total, mut clips_total) = (0.0f64, 0.0f64, 0usize);
    let mut history: Vec<HistoryRow> = Vec::new();

    let mut per_device = recipe.clone();
    per_device.batch /= parallel.world().max(1);
    if let Ok(est) = rho_train::memory::estimate(&per_device) {
        eprintln!(
            "  memory estimate per step and device: {} ({} activations)",
            rho_train::memory::gib(est.total()),
            rho_train::memory::gib(est.activation_bytes)
        );
    }
    let knn_log = std::cell::RefCell::new(Vec::<(f64, f64)>::new());
    let on_epoch = |epoch: u64, net: &rho_objectives::SslNetwork<Autodiff<B>>| {
        let Some(m) = &monitor else { return Ok(()) };
        if !epoch.is_multiple_of(m.every) {
            return Ok(());
        }
        use burn::module::AutodiffModule;
        let acc = rho_train::eval::EvalJob::knn_of(&m.recipe, &net.backbone.valid(), &device)
            .map_err(|e| rho_train::TrainError::Stopped(format!("kNN monitor: {e}")))?;
        eprintln!(
            "  epoch {epoch}: kNN top-1 {:.1}% (k = {})",
            acc.top1, m.recipe.knn.k
        );
        knn_log.borrow_mut().push((epoch as f64, acc.top1));
        let line = serde_json::json!({"epoch": epoch, "knn_top1": acc.top1, "knn_top5": acc.top5});
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(recipe.output.join("metrics.jsonl"))
            .and_then(|mut f| writeln!(f, "{line}"));
        let _ = rho_train::plot::LinePlot {
            title: "kNN top-1 (%)".into(),
            x_label: "epoch".into(),
            series: vec![rho_train::plot::Series {
                name: "kNN top-1".into(),
                color: [30, 120, 30],
                points: knn_log.borrow().clone(),
            }],
        }
        .save_png(&recipe.output.join("knn.png"));
        Ok(())
    };
    let on_step = |log: &rho_train::StepLog| {
        bar.set_length(log.total_steps as u64);
        bar.set_position(log.step as u64 + 1);
        wait_total += log.data_wait_s;
        step_total += log.step_s;
        clips_total += log.clips;
        let left = log.total_steps.saturating_sub(log.step + 1) as f64 * step_total
            / (log.step as f64 + 1.0).max(1.0);
        let m = |k: &str| log.metrics.get(k).copied().unwrap_or(f64::NAN);
        bar.set_message(format!(
            "ep {:.2} loss {:.4} lr {:.4} m {:.4} cos same/cross {:.2}/{:.2} | {:.1} clips/s, data wait {:.0}% | ETA {}",
            log.epoch,
            m("loss"),
            log.lr,
            m("momentum"),
            m("pos_sim"),
            m("cross_sim"),
            clips_total as f64 / step_total.max(1e-9),
            100.0 * wait_total / step_total.max(1e-9),
            humantime(left)
        ));
        history.push(HistoryRow {
            step: log.step as f64,
            loss: m("loss"),
            lr: log.lr,
            emb_std: m("emb_std"),
            pos_sim: m("pos_sim"),
            cross_sim: m("cross_sim"),
            target_mean_norm: m("target_mean_norm"),
            dead_units: m("dead_units"),
        });
        if plot_every > 0 && (log.step + 1).is_multiple_of(plot_every) {
            if let Err(e) = write_plots(&recipe.output, &history) {
                write_err.get_or_insert(e);
            }
        }
        if let Err(e) = serde_json::to_string(log)
            .map_err(anyhow::Error::from)
            .and_then(|l| writeln!(metrics, "{l}").map_err(Into::into))
        {
            write_err.get_or_insert(e);
        }
    };
    let net = train::<B>(
        &recipe,
        opts,
        parallel,
        collective_timeout_s,
        on_step,
        on_epoch,
    )?;
    bar.finish_and_clear();
    if let Some(e) = write_err {
        return Err(e.context(format!("writing {}", metrics_path.display())));
    }
    write_plots(&recipe.output, &history)?;
    if step_total > 0.0 {
        eprintln!(
            "  {:.1} clips/s, {:.2} steps/s, data wait {:.0}% of the step time",
            clips_total as f64 / step_total,
            bar.position() as f64 / step_total,
            100.0 * wait_total / step_total
        );
    }
    let out = recipe.output.join("backbone.safetensors");
    save_safetensors(&net.backbone, &out, Naming::Rho)?;
    eprintln!(
        "metrics: {}; online backbone: {}",
        metrics_path.display(),
        out.display()
    );
    Ok(())
}

/// Pre-trains on the replicas of `parallel`; returns rank 0's network.
fn train<B: Backend>(
    recipe: &Recipe,
    opts: RunOptions,
    parallel: Parallel<B::Device>,
    collective_timeout_s: f64,
    on_step: impl FnMut(&rho_train::StepLog),
    on_epoch: impl FnMut(
        u64,
        &rho_objectives::SslNetwork<Autodiff<B>>,
    ) -> Result<(), rho_train::TrainError>,
) -> Result<rho_objectives::SslNetwork<Autodiff<B>>> {
    Ok(match parallel {
        Parallel::Devices(d) if d.len() == 1 => {
            rho_train::pretrain_monitored::<Autodiff<B>>(recipe, &d[0], opts, on_step, on_epoch)?
        }
        Parallel::Devices(d) => rho_train::pretrain_data_parallel::<Autodiff<B>>(
            recipe,
            &d,
            opts,
            collective_timeout_s,
            on_step,
            on_epoch,
        )?,
        #[cfg(feature = "mpi")]
        Parallel::Mpi {
            transport,
            device,
            local_ranks,
            ..
        } => {
            let rank = transport.rank();
            let ctx = rho_train::RankContext {
                transport,
                local_ranks,
            };
            rho_train::pretrain_rank::<Autodiff<B>>(
                recipe,
                &device,
                opts,
                Some(&ctx),
                on_step,
                on_epoch,
            )
            .map_err(|e| rho_train::TrainError::Rank {
                rank,
                error: Box::new(e),
            })?
        }
    })
}

/// A rank other than 0: the same training, no output.
fn run_rank<B: Backend>(
    recipe: &Recipe,
    opts: RunOptions,
    parallel: Parallel<B::Device>,
) -> Result<()> {
    let opts = RunOptions {
        checkpoint_every: None,
        ..opts
    };
    train::<B>(recipe, opts, parallel, f64::INFINITY, |_| {}, |_, _| Ok(()))?;
    Ok(())
}

fn humantime(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// What the plots show of one step.
struct HistoryRow {
    step: f64,
    loss: f64,
    lr: f64,
    emb_std: f64,
    pos_sim: f64,
    cross_sim: f64,
    target_mean_norm: f64,
    dead_units: f64,
}

/// loss.png, lr.png and collapse.png in the output folder. The collapse plot puts the
/// same-video similarity next to the cross-video one: learning keeps them apart, a trivial
/// solution (every prediction alike) brings them together, with ‖mean target‖ near 1.
fn write_plots(dir: &std::path::Path, h: &[HistoryRow]) -> Result<()> {
    use rho_train::plot::{LinePlot, Series};
    let series = |name: &str, color: [u8; 3], f: fn(&HistoryRow) -> f64| Series {
        name: name.into(),
        color,
        points: h
            .iter()
            .map(|r| (r.step, f(r)))
            .filter(|p| p.1.is_finite())
            .collect(),
    };
    let plots = [
        (
            "loss.png",
            "training loss",
            vec![series("loss", [200, 30, 30], |r| r.loss)],
        ),
        (
            "lr.png",
            "learning rate",
            vec![series("lr", [30, 30, 200], |r| r.lr)],
        ),
        (
            "collapse.png",
            "collapse monitors",
            vec![
                series("same-video cos", [150, 30, 150], |r| r.pos_sim),
                series("cross-video cos", [230, 140, 20], |r| r.cross_sim),
                series("|mean target|", [30, 120, 200], |r| r.target_mean_norm),
                series("dead head units", [120, 120, 120], |r| r.dead_units),
                series("embedding std x10", [30, 150, 30], |r| 10.0 * r.emb_std),
            ],
        ),
    ];
    for (file, title, series) in plots {
        let p = LinePlot {
            title: title.into(),
            x_label: "step".into(),
            series,
        };
        p.save_png(&dir.join(file))
            .with_context(|| format!("cannot write {}", dir.join(file).display()))?;
    }
    Ok(())
}
