//! The pre-training loop: data → method step → optimiser, one code path for every method.
//!
//! Generic over the autodiff backend. Checkpoints hold everything the next step depends on
//! (networks, optimiser state, queue, loader position, step), so a resumed run continues exactly.
//! Gradient accumulation trains the same global batch on a small machine; BatchNorm then sees
//! micro-batch statistics, so it is not the same run as the large batch (as in any framework).

use std::sync::Arc;

use burn::tensor::{backend::AutodiffBackend, Tensor, TensorData};
use rho_data::sampler::ClipSamplerConfig;
use rho_data::{LoaderConfig, ShortVideoPolicy, VideoIndex, VideoLoader};
use rho_model::BatchStatsSync;
use rho_objectives::{Collectives, Method, MethodKind, SingleDevice, SslNetwork};

use crate::distributed::{CollectiveError, DeviceGroup, Transport};

use crate::optim::{GroupedOptimizer, SgdRule};
use crate::recipe::{OptimizerKind, Recipe};
use crate::step::{train_step, MicroBatch, StepEnv, StepPlan};

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
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    /// A data-parallel rank failed (the error is the rank's; not a `source`, so that it is
    /// printed once).
    #[error("rank {rank}: {error}")]
    Rank { rank: usize, error: Box<TrainError> },
}

/// One rank's place in a data-parallel run (see [`crate::distributed`]); the engine builds the
/// rank's [`DeviceGroup`] from it with the recipe's SyncBN group.
pub struct RankContext<B: AutodiffBackend> {
    pub transport: Arc<dyn Transport<B::InnerBackend>>,
    /// Ranks sharing this machine's CPUs: the loader's workers are divided among them.
    pub local_ranks: usize,
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
        shard: Default::default(),
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
    on_step: impl FnMut(&StepLog),
    on_epoch: impl FnMut(u64, &SslNetwork<B>) -> Result<(), TrainError>,
) -> Result<SslNetwork<B>, TrainError> {
    pretrain_rank(recipe, device, opts, None, on_step, on_epoch)
}

/// Serialises network initialisation between the in-process ranks: a seeded init on a shared
/// device RNG must not interleave, or rank 0 would not get the single-process weights.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`pretrain_monitored`] as one rank of a data-parallel run (`rank: None` is a single device).
///
/// Every rank loads its shard of each global batch, runs the method with the group's
/// collectives (and SyncBatchNorm when `model.sync_bn` asks), and applies the gradients
/// averaged over the ranks, so the replicas stay identical and a step equals the single-device
/// step on the whole batch. Only rank 0 logs, checkpoints and calls `on_epoch`.
pub fn pretrain_rank<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    opts: RunOptions,
    rank: Option<&RankContext<B>>,
    mut on_step: impl FnMut(&StepLog),
    mut on_epoch: impl FnMut(u64, &SslNetwork<B>) -> Result<(), TrainError>,
) -> Result<SslNetwork<B>, TrainError> {
    use burn::module::Module;
    use burn::record::Recorder;
    let max_steps = opts.max_steps;
    let (me, world) = rank.map_or((0, 1), |r| (r.transport.rank(), r.transport.world_size()));
    let lead = me == 0;
    let sync_bn = recipe
        .model
        .sync_bn
        .group_size(world)
        .map_err(TrainError::Stopped)?;
    if !recipe
        .batch
        .is_multiple_of(world * recipe.optim.accumulation)
    {
        return Err(TrainError::Stopped(format!(
            "batch {} does not split into {world} devices × optim.accumulation {}; make it a multiple of {}",
            recipe.batch,
            recipe.optim.accumulation,
            world * recipe.optim.accumulation
        )));
    }
    if recipe.batch / (world * recipe.optim.accumulation) < 2 && sync_bn == 1 {
        return Err(TrainError::Stopped(format!(
            "a batch of {} over {world} devices leaves {} video(s) per device and micro-batch; BatchNorm needs 2 (raise batch, or set model.sync_bn = \"all\")",
            recipe.batch,
            recipe.batch / (world * recipe.optim.accumulation)
        )));
    }
    let index = load_index(recipe)?;
    preflight(recipe, &index)?;
    if let Some(limit) = opts.memory_limit {
        let mut per_device = recipe.clone();
        per_device.batch /= world;
        let recipe = &per_device;
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
    let mut lcfg = loader_config(recipe);
    if let Some(r) = rank {
        lcfg.shard = rho_data::Shard { rank: me, world };
        lcfg.workers = (lcfg.workers / r.local_ranks.max(1)).max(1);
    }
    let index_signature = index_signature(&index);
    let mut loader = VideoLoader::new(index, lcfg)?;
    let iters = loader.batches_per_epoch();
    let mcfg = recipe.method_config();
    let (mut net, mut method) = {
        let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
        B::seed(device, recipe.seed);
        let backbone =
            rho_model::ResNet3dConfig::preset(&recipe.model.arch)?.try_init::<B>(device)?;
        let net = mcfg.build_network(backbone, device);
        let method = Method::new(mcfg.clone(), &net, device)?;
        (net, method)
    };
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
    if let Some(r) = rank {
        // Every rank continues from the same point of the same dataset...
        let t = r.transport.as_ref();
        let pos = loader.position();
        crate::distributed::check_agreement(
            t,
            device,
            &["resumed step", "loader epoch", "loader batch", "videos in the index", "hash of the video paths"],
            &[step as u64, pos.epoch, pos.cursor as u64, index_signature.0, index_signature.1],
            "every rank must see the same output folder (checkpoints) and the same dataset: put them on a shared filesystem, or pass the same --resume path to every rank",
        )?;
        // ...and starts from rank 0's state, checked bit-identical.
        net = crate::distributed::broadcast_from_rank0(net, t, "online network")?;
        if let Some(tg) = method.target.as_mut() {
            tg.target =
                crate::distributed::broadcast_from_rank0(tg.target.clone(), t, "momentum encoder")?;
        }
        if let Some(q) = method.queue.as_mut() {
            let [k, d] = q.keys.dims();
            let mine = q.keys.clone().reshape([k * d]);
            let mine = if me == 0 { mine } else { mine.zeros_like() };
            q.keys = t
                .all_reduce_sum(mine, "MoCo queue: broadcast from rank 0")?
                .reshape([k, d]);
        }
    }
    let group = rank.map(|r| Arc::new(DeviceGroup::<B>::new(r.transport.clone(), sync_bn)));
    let coll: &dyn Collectives<B> = match &group {
        Some(g) => g.as_ref(),
        None => &SingleDevice,
    };
    let bn_sync: Option<Arc<dyn BatchStatsSync>> = group
        .clone()
        .filter(|_| sync_bn > 1)
        .map(|g| g as Arc<dyn BatchStatsSync>);
    let mut opt = GroupedOptimizer::new(&net, rule, o.bn_weight_decay);
    if let Some((p, ck)) = &resume {
        opt = opt
            .load_bytes(&ck.optim_bn, &ck.optim_rest, device)
            .map_err(|e| bad_ck(p, format!("optimiser state: {e}")))?;
    }
    let schedule = recipe.schedule();
    let warmup_steps = queue_warmup_steps(recipe);
    let total = max_steps.unwrap_or(warmup_steps + (recipe.epochs * iters as f64).ceil() as usize);
    let env = StepEnv {
        coll,
        bn_sync,
        transport: rank.map(|r| r.transport.as_ref()),
        inspect_gradients: None,
    };
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
            let [b, v, ..] = batch.shape;
            // The schedules (LR, target momentum) count optimiser steps, so MoCo's queue
            // warm-up does not eat into the LR warm-up.
            let epoch = step.saturating_sub(warmup_steps) as f64 / iters as f64;
            let plan = StepPlan {
                step,
                epoch,
                total_epochs: recipe.epochs,
                lr: schedule.lr(epoch),
                skip_optimizer: step < warmup_steps,
                seed: recipe.seed,
            };
            let micro = micro_batches::<B>(&batch, recipe.optim.accumulation, device);
            let out = train_step(net, &mut method, &mut opt, &micro, plan, &env)?;
            net = out.net;
            let metrics = out.metrics;
            let (lr, skipped) = (plan.lr, plan.skip_optimizer);
            if lead {
                on_step(&StepLog {
                    step,
                    epoch,
                    lr,
                    skipped,
                    metrics,
                    data_wait_s,
                    step_s: waited.elapsed().as_secs_f64(),
                    clips: b * v * world,
                    total_steps: total,
                });
            }
            step += 1;
            if lead
                && opts
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
            if lead {
                on_epoch(epoch0 + 1, &net)?;
            }
            if let Some(r) = rank {
                // The other ranks wait for rank 0's epoch hook (e.g. a kNN pass) without the
                // collective timeout, which would take a long hook for a dead peer.
                let t = &r.transport;
                t.all_reduce_sum_untimed(
                    Tensor::zeros([1], device),
                    &format!("end of epoch {} (rank 0 runs the epoch hook)", epoch0 + 1),
                )?;
            }
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

/// Length and a hash of the index's paths, in order (every rank must read the same list).
fn index_signature(index: &VideoIndex) -> (u64, u64) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for e in &index.entries {
        e.source.path().hash(&mut h);
    }
    (index.len() as u64, h.finish())
}

/// MoCo fills its queue before the first optimiser step (spec §2.2): ⌈K / keys per step⌉
/// steps, with B·V keys entering per step (V = max(ρ, 2) views). Other methods: none.
pub fn queue_warmup_steps(recipe: &Recipe) -> usize {
    let m = recipe.method_config();
    if m.kind != MethodKind::Moco {
        return 0;
    }
    m.queue_len.div_ceil(recipe.batch * recipe.data.rho.max(2))
}

/// A loader batch [b, V, 3, T, H, W] as `accum` micro-batches of V clip tensors, each with the
/// dataset indices of its videos.
fn micro_batches<B: AutodiffBackend>(
    batch: &rho_data::Batch,
    accum: usize,
    device: &B::Device,
) -> Vec<MicroBatch<B>> {
    let [b, v, c, t, h, w] = batch.shape;
    let per_view = c * t * h * w;
    let micro = b / accum; // `b` is this rank's shard
    (0..accum)
        .map(|part| {
            let rows = part * micro..(part + 1) * micro;
            let clips = (0..v)
                .map(|k| {
                    let mut data = Vec::with_capacity(micro * per_view);
                    for i in rows.clone() {
                        let start = (i * v + k) * per_view;
                        data.extend_from_slice(&batch.clips[start..start + per_view]);
                    }
                    Tensor::from_data(TensorData::new(data, [micro, c, t, h, w]), device)
                })
                .collect();
            let videos = rows.map(|i| batch.samples[i] as u64).collect();
            MicroBatch { clips, videos }
        })
        .collect()
}
