//! The pre-training loop: data → method step → optimiser, one code path for every method.
//!
//! Generic over the autodiff backend. Checkpoints hold everything the next step depends on
//! (networks, optimiser state, queue, loader position, step), so a resumed run continues exactly.
//! Gradient accumulation trains the same global batch on a small machine; BatchNorm then sees
//! micro-batch statistics, so it is not the same run as the large batch (as in any framework).

use burn::tensor::{backend::AutodiffBackend, Tensor, TensorData};
use rho_data::sampler::ClipSamplerConfig;
use rho_data::{LoaderConfig, ShortVideoPolicy, VideoIndex, VideoLoader};
use rho_objectives::{Method, MethodKind, SingleDevice, SslNetwork, StepContext};

use crate::optim::{GroupedOptimizer, SgdRule};
use crate::recipe::{OptimizerKind, Recipe};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] rho_data::DataError),
    #[error(transparent)]
    Objective(#[from] rho_objectives::ObjectiveError),
    #[error(transparent)]
    Model(#[from] rho_model::ModelError),
    #[error("{0}")]
    Stopped(String),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}

/// How to run beyond the recipe.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop after this many steps (in total, counting resumed ones).
    pub max_steps: Option<usize>,
    /// Write a checkpoint into the recipe's output folder every N steps.
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept (the oldest are deleted).
    pub keep: usize,
    /// Continue from this checkpoint.
    pub resume: Option<std::path::PathBuf>,
    /// Refuse to start when the memory estimate exceeds this many bytes (see [`crate::memory`]).
    pub memory_limit: Option<f64>,
}

/// What one step reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: f64,
    pub lr: f64,
    /// The optimiser was skipped (MoCo's queue warm-up).
    pub skipped: bool,
    /// Seconds spent waiting for the batch, and for the whole step (wait included).
    pub data_wait_s: f64,
    pub step_s: f64,
    /// Clips in the step (videos × views).
    pub clips: usize,
    /// Steps the run will take in total.
    pub total_steps: usize,
    pub metrics: std::collections::BTreeMap<&'static str, f64>,
}

/// The recipe's dataset index.
pub fn load_index(recipe: &Recipe) -> Result<VideoIndex, TrainError> {
    Ok(recipe.dataset().load()?)
}

/// The loader settings of a recipe.
pub fn loader_config(recipe: &Recipe) -> LoaderConfig {
    let d = &recipe.data;
    LoaderConfig {
        batch_size: recipe.batch,
        workers: d.workers,
        prefetch: 2,
        seed: recipe.seed,
        sampler: ClipSamplerConfig {
            frames: d.frames,
            stride: d.stride,
            rho: d.rho,
            max_timespan_s: d.max_timespan_s,
        },
        augment: d.augment.apply(d.crop),
        short_side: d.short_side,
        decode_timeout_s: 120.0,
        max_substitutions: 10,
        short_videos: ShortVideoPolicy::Pad,
        frame_folder_fps: 30.0,
        views: Default::default(),
    }
}

/// Pre-trains for the recipe's epochs (or `max_steps`), calling `on_step` after every step, and
/// returns the online network.
pub fn pretrain<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    max_steps: Option<usize>,
    on_step: impl FnMut(&StepLog),
) -> Result<SslNetwork<B>, TrainError> {
    pretrain_with(
        recipe,
        device,
        RunOptions {
            max_steps,
            ..Default::default()
        },
        on_step,
    )
}

fn mpk() -> burn::record::NamedMpkBytesRecorder<burn::record::FullPrecisionSettings> {
    burn::record::NamedMpkBytesRecorder::new()
}

/// [`pretrain`] with checkpoints and resume.
pub fn pretrain_with<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    opts: RunOptions,
    on_step: impl FnMut(&StepLog),
) -> Result<SslNetwork<B>, TrainError> {
    pretrain_monitored(recipe, device, opts, on_step, |_, _| Ok(()))
}

/// [`pretrain_with`] that also calls `on_epoch(epochs_done, &online)` at the end of every epoch
/// (e.g. a kNN monitor); an error from it stops the run.
pub fn pretrain_monitored<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    opts: RunOptions,
    mut on_step: impl FnMut(&StepLog),
    mut on_epoch: impl FnMut(u64, &SslNetwork<B>) -> Result<(), TrainError>,
) -> Result<SslNetwork<B>, TrainError> {
    use burn::module::Module;
    use burn::record::Recorder;
    let max_steps = opts.max_steps;
    let index = load_index(recipe)?;
    preflight(recipe, &index)?;
    if let Some(limit) = opts.memory_limit {
        let est = crate::memory::estimate(recipe)?;
        if est.total() > limit {
            let a = recipe.optim.accumulation;
            return Err(TrainError::Stopped(format!(
                "a step of {} needs about {} ({} activations for {} videos × {} clips of {}×{}², {} parameters and optimiser state), more than the {} available; raise optim.accumulation (now {a}, e.g. --set optim.accumulation={}), or lower batch, data.crop or data.frames",
                recipe.name,
                crate::memory::gib(est.total()),
                crate::memory::gib(est.activation_bytes),
                recipe.batch / a,
                recipe.data.rho.max(2),
                recipe.data.frames,
                recipe.data.crop,
                crate::memory::gib(est.parameter_bytes),
                crate::memory::gib(limit),
                (a * 2..=recipe.batch).find(|k| recipe.batch.is_multiple_of(*k) && recipe.batch / k >= 2).unwrap_or(recipe.batch / 2)
            )));
        }
    }
    B::seed(device, recipe.seed);
    let mut loader = VideoLoader::new(index, loader_config(recipe))?;
    let iters = loader.batches_per_epoch();
    let backbone = rho_model::ResNet3dConfig::preset(&recipe.model.arch)?.try_init::<B>(device)?;
    let mcfg = recipe.method_config();
    let mut net = mcfg.build_network(backbone, device);
    let mut method = Method::new(mcfg.clone(), &net, device)?;
    let o = &recipe.optim;
    let rule = SgdRule {
        momentum: o.momentum,
        nesterov: o.nesterov,
        weight_decay: o.weight_decay,
        lars_trust: (o.optimizer == OptimizerKind::Lars).then_some(o.lars_trust),
    };
    let mut step = 0;
    let resume = match &opts.resume {
        Some(p) => Some((p.clone(), crate::checkpoint::Checkpoint::read(p)?)),
        None => None,
    };
    let bad_ck = |p: &std::path::Path, e: String| crate::checkpoint::CheckpointError::Read {
        path: p.to_path_buf(),
        reason: e,
    };
    if let Some((p, ck)) = &resume {
        let rec = Recorder::<B>::load(&mpk(), ck.online.clone(), device)
            .map_err(|e| bad_ck(p, format!("online network: {e}")))?;
        net = net.load_record(rec);
        method = Method::new(mcfg.clone(), &net, device)?;
        if let Some(t) = method.target.as_mut() {
            let rec = Recorder::<B>::load(&mpk(), ck.target.clone(), device)
                .map_err(|e| bad_ck(p, format!("target network: {e}")))?;
            t.target = t.target.clone().load_record(rec).no_grad();
        }
        if let Some(q) = &ck.meta.queue {
            method.load_queue_state(q, device)?;
        }
        loader.set_position(ck.meta.position);
        step = ck.meta.step;
    }
    let mut opt = GroupedOptimizer::new(&net, rule, o.bn_weight_decay);
    if let Some((p, ck)) = &resume {
        opt = opt
            .load_bytes(&ck.optim_bn, &ck.optim_rest, device)
            .map_err(|e| bad_ck(p, format!("optimiser state: {e}")))?;
    }
    let schedule = recipe.schedule();
    // MoCo: no optimiser step until the queue has been filled once (spec §2.2).
    let warmup_iters = if mcfg.kind == MethodKind::Moco {
        mcfg.queue_len / recipe.batch
    } else {
        0
    };
    let total = max_steps.unwrap_or((recipe.epochs * iters as f64).ceil() as usize);
    while step < total {
        let epoch0 = loader.position().epoch;
        let mut batches = loader.epoch();
        let epoch_done;
        loop {
            let waited = std::time::Instant::now();
            let Some(batch) = batches.next() else {
                epoch_done = true;
                break;
            };
            let batch = batch?;
            let data_wait_s = waited.elapsed().as_secs_f64();
            let [b, v, c, t, h, w] = batch.shape;
            let per_view = c * t * h * w;
            let epoch = epoch0 as f64 + batch.position.cursor as f64 / iters as f64;
            let lr = schedule.lr(epoch);
            let skipped = step < warmup_iters;
            // Gradient accumulation: `accum` micro-batches, each a separate forward (so BatchNorm
            // sees micro-batch statistics), gradients summed, one optimiser step.
            let accum = recipe.optim.accumulation;
            let micro = b / accum;
            let (mut metrics, mut grads_bn, mut grads_rest) =
                (std::collections::BTreeMap::new(), None, None);
            net = method.prepare(net);
            for part in 0..accum {
                let clips: Vec<Tensor<B, 5>> = (0..v)
                    .map(|k| {
                        let mut data = Vec::with_capacity(micro * per_view);
                        for i in part * micro..(part + 1) * micro {
                            let start = (i * v + k) * per_view;
                            data.extend_from_slice(&batch.clips[start..start + per_view]);
                        }
                        Tensor::from_data(TensorData::new(data, [micro, c, t, h, w]), device)
                    })
                    .collect();
                let ctx = StepContext {
                    epoch,
                    total_epochs: recipe.epochs,
                    update_target: part == 0,
                };
                let out = method.step(&net, &clips, ctx, &SingleDevice)?;
                let loss = out.metrics.get("loss").copied().unwrap_or(f64::NAN);
                if !loss.is_finite() {
                    return Err(TrainError::Stopped(format!("the loss is {loss} at step {step} (epoch {epoch:.3}); lower the learning rate")));
                }
                if out.metrics.get("emb_std").is_some_and(|s| *s < 1e-4) {
                    return Err(TrainError::Stopped(format!(
                        "embeddings collapsed at step {step} (std {:.2e})",
                        out.metrics["emb_std"]
                    )));
                }
                for (k, val) in &out.metrics {
                    *metrics.entry(*k).or_insert(0.0) += val / accum as f64;
                }
                let grads = out.loss.div_scalar(accum as f64).backward();
                if !skipped {
                    let (gb, gr) = opt.split(&net, grads);
                    grads_bn = Some(accumulate_grads(&net, grads_bn, gb));
                    grads_rest = Some(accumulate_grads(&net, grads_rest, gr));
                }
            }
            if let (Some(mut gb), Some(mut gr)) = (grads_bn, grads_rest) {
                net = opt.step_split(lr, net, gb.grads(), gr.grads());
            }
            on_step(&StepLog {
                step,
                epoch,
                lr,
                skipped,
                metrics,
                data_wait_s,
                step_s: waited.elapsed().as_secs_f64(),
                clips: b * v,
                total_steps: total,
            });
            step += 1;
            if opts
                .checkpoint_every
                .is_some_and(|every| every > 0 && step % every == 0)
            {
                // The position of the next batch: what a resumed run must start from.
                let cursor = batch.position.cursor + 1;
                let position = if cursor >= iters {
                    rho_data::LoaderPosition {
                        epoch: epoch0 + 1,
                        cursor: 0,
                    }
                } else {
                    rho_data::LoaderPosition {
                        epoch: epoch0,
                        cursor,
                    }
                };
                save_checkpoint(recipe, &net, &method, &opt, step, position, opts.keep)?;
            }
            if step >= total {
                epoch_done = batch.position.cursor + 1 >= iters;
                break;
            }
        }
        drop(batches);
        if epoch_done {
            on_epoch(epoch0 + 1, &net)?;
        }
    }
    Ok(net)
}

fn save_checkpoint<B: AutodiffBackend>(
    recipe: &Recipe,
    net: &SslNetwork<B>,
    method: &Method<B>,
    opt: &GroupedOptimizer<SslNetwork<B>, B>,
    step: usize,
    position: rho_data::LoaderPosition,
    keep: usize,
) -> Result<(), TrainError> {
    use crate::checkpoint::{
        checkpoint_path, list_checkpoints, Checkpoint, CheckpointError, CheckpointMeta,
    };
    use burn::module::Module;
    use burn::record::Recorder;
    let dir = &recipe.output;
    let werr = |e: String| CheckpointError::Write {
        path: dir.clone(),
        reason: e,
    };
    std::fs::create_dir_all(dir).map_err(|e| werr(e.to_string()))?;
    let online = Recorder::<B>::record(&mpk(), net.clone().into_record(), ())
        .map_err(|e| werr(e.to_string()))?;
    let target = match &method.target {
        Some(t) => Recorder::<B>::record(&mpk(), t.target.clone().into_record(), ())
            .map_err(|e| werr(e.to_string()))?,
        None => Vec::new(),
    };
    let (optim_bn, optim_rest) = opt.to_bytes().map_err(werr)?;
    let meta = CheckpointMeta {
        step,
        position,
        queue: method.queue_state(),
        recipe_name: recipe.name.clone(),
        recipe: toml::to_string(recipe).unwrap_or_default(),
        checksums: [0; 4],
    };
    let mut ck = Checkpoint {
        meta,
        online,
        target,
        optim_bn,
        optim_rest,
    };
    ck.write(&checkpoint_path(dir, step))?;
    let all = list_checkpoints(dir);
    for old in all.iter().take(all.len().saturating_sub(keep.max(1))) {
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

/// Refuses runs that cannot work before any compute is spent: files the index lists but that do
/// not exist, and clips longer than the videos.
pub fn preflight(recipe: &Recipe, index: &VideoIndex) -> Result<(), TrainError> {
    let missing: Vec<String> = index
        .entries
        .iter()
        .map(|e| e.source.path())
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
        return Err(TrainError::Stopped(format!(
            "{} of {} videos in {} do not exist (first: {}); fix data.index/data.prefix, or write a clean list with `rho data check --quarantine`",
            missing.len(),
            index.len(),
            recipe.data.index.display(),
            shown.join(", ")
        )));
    }
    #[cfg(feature = "video")]
    {
        // Probe a few videos: if none is as long as one clip, every clip would be padding.
        let sampler = loader_config(recipe).sampler;
        let mut longest: Option<(f64, f64)> = None; // (frames, span) of the longest probed
        for e in index.entries.iter().take(16) {
            if let rho_data::VideoSource::File(p) = &e.source {
                if let Ok(d) = rho_data::decode::VideoDecoder::open(p) {
                    let pr = d.probe();
                    let span = sampler.span(pr.fps) as f64;
                    let frames = pr.num_frames as f64;
                    if longest.is_none_or(|(f, s)| frames / span > f / s) {
                        longest = Some((frames, span));
                    }
                }
            }
        }
        if let Some((frames, span)) = longest {
            if frames < span {
                return Err(TrainError::Stopped(format!(
                    "a clip of {}×{} spans {:.2} s, but the longest of the first videos has only {:.0} of the {:.0} frames it needs; shorten data.frames/data.stride",
                    recipe.data.frames,
                    recipe.data.stride,
                    sampler.span_seconds(),
                    frames,
                    span
                )));
            }
        }
    }
    Ok(())
}

fn accumulate_grads<B: AutodiffBackend>(
    net: &SslNetwork<B>,
    acc: Option<burn::optim::GradientsAccumulator<SslNetwork<B>>>,
    grads: burn::optim::GradientsParams,
) -> burn::optim::GradientsAccumulator<SslNetwork<B>> {
    let mut acc = acc.unwrap_or_default();
    acc.accumulate(net, grads);
    acc
}
