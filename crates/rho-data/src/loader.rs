//! `VideoLoader`: worker threads turn dataset entries into batches [B, V, 3, T, S, S] (V = ρ
//! clips per video, or 2 crops of one clip when ρ = 1), with bounded prefetch and exact
//! determinism: the epoch's order and every random choice are functions of (seed, epoch, sample,
//! clip), so a batch is the same whatever the number of workers, and a loader restored to a
//! saved [`LoaderPosition`] yields exactly the batches the uninterrupted run would have.
//!
//! A video that is missing, undecodable, too short or hangs never stops the loader: it is
//! replaced by another sample chosen deterministically, counted, and reported once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::augment::{AugmentConfig, ClipPixels};
use crate::error::DataError;
use crate::index::{VideoIndex, VideoSource};
use crate::rng::{stream, Purpose};
use crate::sampler::{ClipSamplerConfig, VideoTiming};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub workers: usize,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    pub sampler: ClipSamplerConfig,
    pub augment: AugmentConfig,
    /// Short side of decoded frames (256 in the paper's MoCo/BYOL configs).
    pub short_side: u32,
    /// A decode taking longer is abandoned and the video treated as bad.
    pub decode_timeout_s: f64,
    /// Attempts to find a good substitute for a bad video before the batch fails.
    pub max_substitutions: usize,
    /// What to do with videos shorter than one clip's span.
    #[serde(default)]
    pub short_videos: ShortVideoPolicy,
    /// Frame rate assumed for JPEG frame folders.
    #[serde(default = "default_folder_fps")]
    pub frame_folder_fps: f64,
    /// What each sample yields: ρ augmented clips (pre-training), one augmented clip (supervised
    /// training), or the fixed test views.
    #[serde(default)]
    pub views: ViewMode,
    /// Data parallelism: this rank decodes only its slice of every global batch.
    #[serde(default)]
    pub shard: Shard,
}

/// One rank's slice of every batch: rows `rank·B/world .. (rank+1)·B/world` of the global batch
/// of `batch_size` videos. The global order and every clip's randomness depend only on the seed
/// and the video, so the ranks together load exactly the single-process batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { rank: 0, world: 1 }
    }
}

/// The views of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewMode {
    /// ρ clips at random times (two crops of one clip when ρ = 1), each augmented.
    #[default]
    Rho,
    /// One clip at a random time, augmented (linear probing and fine-tuning).
    Single,
    /// `clips` clips spread uniformly over the video × `crops` spatial crops of the frames
    /// resized to the crop size on their short side; no randomness (docs/method.md §5.1).
    Test { clips: usize, crops: usize },
    /// One clip in the middle of the video, centre crop of the frames resized to the crop size
    /// on their short side (feature extraction).
    Centre,
}

fn default_folder_fps() -> f64 {
    30.0
}

/// Videos shorter than a clip: repeat their last frame (the released code's clamping), or treat
/// them as bad and substitute another sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShortVideoPolicy {
    #[default]
    Pad,
    Substitute,
}

impl LoaderConfig {
    /// Views per video handed to a method.
    pub fn views(&self) -> usize {
        match self.views {
            ViewMode::Rho if self.sampler.rho == 1 => 2,
            ViewMode::Rho => self.sampler.rho,
            ViewMode::Single => 1,
            ViewMode::Test { clips, crops } => clips * crops,
            ViewMode::Centre => 1,
        }
    }

    /// The clips to decode for `sample` in `epoch`.
    fn plan(
        &self,
        timing: VideoTiming,
        epoch: u64,
        sample: usize,
    ) -> Result<crate::sampler::ClipPlan, DataError> {
        match self.views {
            ViewMode::Rho => self.sampler.plan(timing, self.seed, epoch, sample as u64),
            ViewMode::Single => ClipSamplerConfig {
                rho: 1,
                ..self.sampler
            }
            .plan(timing, self.seed, epoch, sample as u64),
            ViewMode::Test { clips, .. } => {
                Ok(crate::eval_views::eval_plan(&self.sampler, timing, clips))
            }
            ViewMode::Centre => Ok(crate::eval_views::centre_plan(&self.sampler, timing)),
        }
    }
}

/// Where the loader is: the next batch is batch `cursor` of epoch `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoaderPosition {
    pub epoch: u64,
    pub cursor: usize,
}

/// One batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// [B, V, 3, T, S, S], normalised.
    pub clips: Vec<f32>,
    pub shape: [usize; 6],
    /// Dataset indices actually used (after substitutions).
    pub samples: Vec<usize>,
    pub labels: Vec<Option<usize>>,
    pub position: LoaderPosition,
}

/// Bad videos seen so far: path → reason (each reported once).
#[derive(Debug, Default)]
pub struct BadVideos {
    pub seen: Mutex<BTreeMap<PathBuf, String>>,
    pub substitutions: AtomicUsize,
    /// Variable-frame-rate videos: used (frames mapped by timestamp at the nominal rate), counted
    /// and reported once.
    pub variable_frame_rate: Mutex<std::collections::BTreeSet<PathBuf>>,
}

pub struct VideoLoader {
    index: Arc<VideoIndex>,
    cfg: LoaderConfig,
    position: LoaderPosition,
    pub bad: Arc<BadVideos>,
}

impl VideoLoader {
    /// A loader for training epochs: at least one full batch, split evenly over the shards.
    pub fn new(index: VideoIndex, cfg: LoaderConfig) -> Result<Self, DataError> {
        if cfg.shard.world == 0
            || cfg.shard.rank >= cfg.shard.world
            || !cfg.batch_size.is_multiple_of(cfg.shard.world)
        {
            return Err(DataError::Config(format!(
                "the batch of {} videos cannot be split into {} equal shards (rank {}); make the batch a multiple of the number of devices",
                cfg.batch_size, cfg.shard.world, cfg.shard.rank
            )));
        }
        if index.len() < cfg.batch_size {
            return Err(DataError::Config(format!(
                "the index has {} videos, fewer than one batch of {}",
                index.len(),
                cfg.batch_size
            )));
        }
        Self::for_evaluation(index, cfg)
    }

    /// A loader for [`in_order`](Self::in_order) passes: any number of videos (even fewer than
    /// one batch) is fine.
    pub fn for_evaluation(index: VideoIndex, cfg: LoaderConfig) -> Result<Self, DataError> {
        cfg.sampler.validate()?;
        if cfg.batch_size == 0 || cfg.workers == 0 || index.is_empty() {
            return Err(DataError::Config(
                "batch_size, workers and the number of videos must be at least 1".into(),
            ));
        }
        Ok(Self {
            index: Arc::new(index),
            cfg,
            position: LoaderPosition::default(),
            bad: Arc::new(BadVideos::default()),
        })
    }

    /// Full batches per epoch (the last partial batch is dropped, as in pre-training).
    pub fn batches_per_epoch(&self) -> usize {
        self.index.len() / self.cfg.batch_size
    }

    pub fn position(&self) -> LoaderPosition {
        self.position
    }

    pub fn set_position(&mut self, p: LoaderPosition) {
        self.position = p;
    }

    /// Videos this rank loads per batch.
    pub fn local_batch(&self) -> usize {
        self.cfg.batch_size / self.cfg.shard.world.max(1)
    }

    /// The dataset order of `epoch`.
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.index.len()).collect();
        order.shuffle(&mut stream(self.cfg.seed, epoch, 0, 0, Purpose::Shuffle));
        order
    }

    /// The remaining batches of the current epoch, decoded by the worker threads; the position
    /// advances as batches are taken, and moves to the next epoch at the end.
    pub fn epoch(&mut self) -> EpochIter<'_> {
        let LoaderPosition { epoch, cursor } = self.position;
        let b = self.cfg.batch_size;
        let (lb, first) = (self.local_batch(), self.cfg.shard.rank * self.local_batch());
        let order = self.epoch_order(epoch);
        let jobs: Vec<usize> = (cursor..self.batches_per_epoch())
            .flat_map(|k| order[k * b + first..k * b + first + lb].iter().copied())
            .collect();
        let total = jobs.len() / lb;
        let (index, cfg, bad) = (self.index.clone(), self.cfg.clone(), self.bad.clone());
        let pool = WorkerPool::spawn(&self.cfg, lb, jobs, move |sample| {
            load_with_substitutes(&index, &cfg, &bad, epoch, sample)
        });
        EpochIter {
            loader: self,
            pool,
            next_job: 0,
            batches_left: total,
        }
    }
}

impl VideoLoader {
    /// Every video once, in index order, in batches (the last one may be smaller), for
    /// evaluation: no shuffling, no dropped videos and no substitutes; a video that cannot be
    /// decoded is an error naming it (a test set must not silently change).
    pub fn in_order(&self) -> InOrderIter {
        let n = self.index.len();
        let (index, cfg) = (self.index.clone(), self.cfg.clone());
        let bad = Arc::new(BadVideos::default());
        let pool = WorkerPool::spawn(
            &self.cfg,
            self.cfg.batch_size,
            (0..n).collect(),
            move |sample| load_sample(&index, &cfg, &bad, 0, sample),
        );
        InOrderIter {
            cfg: self.cfg.clone(),
            len: n,
            pool,
            next: 0,
        }
    }

    /// [`in_order`](Self::in_order) for feature extraction: a video that cannot be decoded is
    /// left out of its batch and returned beside it, so one bad file does not stop the pass.
    pub fn in_order_skipping_bad(&self) -> SkippingIter {
        SkippingIter(self.in_order())
    }
}

/// A batch of [`VideoLoader::in_order_skipping_bad`]: the videos that decoded, and the
/// (dataset index, error) of those that did not.
pub struct PartialBatch {
    pub batch: Batch,
    pub failed: Vec<(usize, DataError)>,
}

/// Batches of [`VideoLoader::in_order_skipping_bad`].
pub struct SkippingIter(InOrderIter);

impl Iterator for SkippingIter {
    type Item = Result<PartialBatch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next_partial()
    }
}

/// Batches of [`VideoLoader::in_order`].
pub struct InOrderIter {
    cfg: LoaderConfig,
    len: usize,
    pool: WorkerPool,
    next: usize,
}

impl InOrderIter {
    /// The next batch with the videos that failed beside it; an error ends the pass.
    fn next_partial(&mut self) -> Option<Result<PartialBatch, DataError>> {
        if self.next >= self.len {
            return None;
        }
        let end = (self.next + self.cfg.batch_size).min(self.len);
        let batch = self
            .pool
            .batch_partial(self.next..end, &self.cfg, LoaderPosition::default());
        self.next = if batch.is_ok() { end } else { self.len };
        Some(batch)
    }
}

impl Iterator for InOrderIter {
    type Item = Result<Batch, DataError>;

    /// A video that fails fails its batch and ends the pass.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_partial()?.and_then(|mut p| {
            if p.failed.is_empty() {
                Ok(p.batch)
            } else {
                self.next = self.len;
                Err(p.failed.swap_remove(0).1)
            }
        }))
    }
}

struct Sample {
    index: usize,
    label: Option<usize>,
    /// [V, 3, T, S, S]
    views: Vec<f32>,
}

pub struct EpochIter<'a> {
    loader: &'a mut VideoLoader,
    pool: WorkerPool,
    next_job: usize,
    batches_left: usize,
}

impl Iterator for EpochIter<'_> {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.batches_left == 0 {
            if self.loader.position.cursor >= self.loader.batches_per_epoch() {
                self.loader.position = LoaderPosition {
                    epoch: self.loader.position.epoch + 1,
                    cursor: 0,
                };
            }
            return None;
        }
        let b = self.loader.local_batch();
        let jobs = self.next_job..self.next_job + b;
        let batch = match self
            .pool
            .batch(jobs, &self.loader.cfg, self.loader.position)
        {
            Ok(batch) => batch,
            Err(e) => return Some(Err(e)),
        };
        self.next_job += b;
        self.loader.position.cursor += 1;
        self.batches_left -= 1;
        Some(Ok(batch))
    }
}

/// Worker threads that load `jobs` (dataset indices) in any order, at most a prefetch window
/// ahead of the consumer, and hand them back in job order.
struct WorkerPool {
    rx: Receiver<(usize, Result<Sample, DataError>)>,
    window: Arc<(Mutex<usize>, Condvar)>,
    pending: BTreeMap<usize, Result<Sample, DataError>>,
}

impl WorkerPool {
    /// Jobs `jobs` as one batch, in job order, failing on the first video that failed.
    fn batch(
        &mut self,
        jobs: std::ops::Range<usize>,
        cfg: &LoaderConfig,
        position: LoaderPosition,
    ) -> Result<Batch, DataError> {
        let mut partial = self.batch_partial(jobs, cfg, position)?;
        match partial.failed.is_empty() {
            true => Ok(partial.batch),
            false => Err(partial.failed.swap_remove(0).1),
        }
    }

    /// Jobs `jobs` as one batch, in job order, with the videos that could not be decoded left
    /// out and returned beside it; then lets the workers run a prefetch window of batches
    /// ahead. The one place a batch is assembled.
    fn batch_partial(
        &mut self,
        jobs: std::ops::Range<usize>,
        cfg: &LoaderConfig,
        position: LoaderPosition,
    ) -> Result<PartialBatch, DataError> {
        let n = jobs.len();
        let [t, side] = [cfg.sampler.frames, cfg.augment.size];
        let shape = [n, cfg.views(), 3, t, side, side];
        let mut out = Batch {
            clips: Vec::with_capacity(shape.iter().product()),
            shape,
            samples: Vec::with_capacity(n),
            labels: Vec::with_capacity(n),
            position,
        };
        let mut failed = Vec::new();
        for j in jobs.clone() {
            match self.take(j) {
                Ok(s) => {
                    out.clips.extend_from_slice(&s.views);
                    out.samples.push(s.index);
                    out.labels.push(s.label);
                }
                Err(e @ DataError::Decode { .. }) => failed.push((j, e)),
                Err(e) => return Err(e),
            }
        }
        out.shape[0] = out.samples.len();
        self.allow_up_to(jobs.end + cfg.prefetch.max(1) * n);
        Ok(PartialBatch { batch: out, failed })
    }
}

impl WorkerPool {
    fn spawn(
        cfg: &LoaderConfig,
        batch: usize,
        jobs: Vec<usize>,
        load: impl Fn(usize) -> Result<Sample, DataError> + Send + Sync + 'static,
    ) -> Self {
        let ahead = cfg.prefetch.max(1) * batch;
        let (tx, rx) = sync_channel::<(usize, Result<Sample, DataError>)>(ahead);
        let next = Arc::new(AtomicUsize::new(0));
        let window = Arc::new((Mutex::new(ahead), Condvar::new()));
        let (jobs, load) = (Arc::new(jobs), Arc::new(load));
        for _ in 0..cfg.workers {
            let (tx, next, window) = (tx.clone(), next.clone(), window.clone());
            let (jobs, load) = (jobs.clone(), load.clone());
            std::thread::spawn(move || loop {
                let j = next.fetch_add(1, Ordering::SeqCst);
                if j >= jobs.len() {
                    return;
                }
                {
                    // Bounded prefetch: wait until the consumer is close enough.
                    let (lock, cv) = &*window;
                    let mut limit = lock.lock().unwrap_or_else(|e| e.into_inner());
                    while j >= *limit {
                        limit = cv.wait(limit).unwrap_or_else(|e| e.into_inner());
                    }
                }
                if tx.send((j, load(jobs[j]))).is_err() {
                    return;
                }
            });
        }
        Self {
            rx,
            window,
            pending: BTreeMap::new(),
        }
    }

    /// The result of job `j` (waiting for it).
    fn take(&mut self, j: usize) -> Result<Sample, DataError> {
        while !self.pending.contains_key(&j) {
            match self.rx.recv() {
                Ok((k, s)) => {
                    self.pending.insert(k, s);
                }
                Err(_) => return Err(DataError::Config("the loader's workers stopped".into())),
            }
        }
        self.pending
            .remove(&j)
            .unwrap_or_else(|| Err(DataError::Config("a loader job was lost".into())))
    }

    /// Lets the workers start jobs below `limit`.
    fn allow_up_to(&self, limit: usize) {
        let (lock, cv) = &*self.window;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = limit;
        cv.notify_all();
    }
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        // Let waiting workers run to the end; they stop when the channel is gone.
        self.allow_up_to(usize::MAX);
    }
}

fn load_with_substitutes(
    index: &Arc<VideoIndex>,
    cfg: &LoaderConfig,
    bad: &BadVideos,
    epoch: u64,
    sample: usize,
) -> Result<Sample, DataError> {
    let mut candidate = sample;
    for attempt in 0..=cfg.max_substitutions {
        match load_sample(index, cfg, bad, epoch, candidate) {
            Ok(s) => return Ok(s),
            Err(e) => {
                let path = index.entries[candidate].source.path().to_path_buf();
                let mut seen = bad.seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.entry(path).or_insert_with(|| {
                    eprintln!("rho-data: skipping bad video ({e}); a substitute is used");
                    e.to_string()
                });
                bad.substitutions.fetch_add(1, Ordering::Relaxed);
                let mut rng = stream(
                    cfg.seed,
                    epoch,
                    sample as u64,
                    attempt as u64 + 1,
                    Purpose::Substitute,
                );
                candidate = rng.random_range(0..index.len());
            }
        }
    }
    Err(DataError::Config(format!(
        "sample {sample} and {} substitutes all failed to decode; check the index with `rho data check`",
        cfg.max_substitutions
    )))
}

/// Decodes and augments one video (the work of one job), with a timeout on the decode.
fn load_sample(
    index: &Arc<VideoIndex>,
    cfg: &LoaderConfig,
    bad: &BadVideos,
    epoch: u64,
    sample: usize,
) -> Result<Sample, DataError> {
    let entry = index.entries[sample].clone();
    let path = entry.source.path().to_path_buf();
    let c = cfg.clone();
    // A decoder stuck on a pathological file is abandoned after the timeout (its thread ends
    // with the decode or the process); the loader moves on.
    let (frames, plan_views, vfr) = crate::file_guard::with_deadline(
        &path,
        Duration::from_secs_f64(cfg.decode_timeout_s.max(0.001)),
        "decoding",
        move || decode_sample(&entry.source, &c, epoch, sample),
    )?;
    if vfr {
        let mut set = bad
            .variable_frame_rate
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if set.insert(path.clone()) {
            eprintln!("rho-data: {} has a variable frame rate; frames are taken by timestamp at its average rate", path.display());
        }
    }
    let mut views = Vec::new();
    let test_crops = match cfg.views {
        ViewMode::Test { crops, .. } => Some(crops),
        ViewMode::Centre => Some(1),
        ViewMode::Rho | ViewMode::Single => None,
    };
    if let Some(crops) = test_crops {
        let a = &cfg.augment;
        for pixels in &frames {
            for b in crate::eval_views::spatial_crops(pixels.h, pixels.w, a.size, crops) {
                views.extend(pixels.crop_resize_normalize(b, a.size, false, a.mean, a.std));
            }
        }
        return Ok(Sample {
            index: sample,
            label: index.entries[sample].label,
            views,
        });
    }
    for (v, clip) in plan_views.into_iter().enumerate() {
        let pixels: &ClipPixels = &frames[clip];
        let params = cfg.augment.sample(
            pixels.h,
            pixels.w,
            &mut stream(cfg.seed, epoch, sample as u64, v as u64, Purpose::Augment),
        );
        views.extend(pixels.clone().augment(&params, &cfg.augment));
    }
    Ok(Sample {
        index: sample,
        label: index.entries[sample].label,
        views,
    })
}

/// The clips of one video as pixels, which clip each view uses, and whether the video has a
/// variable frame rate.
type DecodedSample = (Vec<ClipPixels>, Vec<usize>, bool);

#[cfg(feature = "video")]
fn decode_sample(
    source: &VideoSource,
    cfg: &LoaderConfig,
    epoch: u64,
    sample: usize,
) -> Result<DecodedSample, DataError> {
    use crate::decode::VideoDecoder;
    let path = match source {
        VideoSource::File(p) => p,
        VideoSource::FrameDir { .. } => return decode_frame_folder(source, cfg, epoch, sample),
    };
    let mut dec = VideoDecoder::open(path)?;
    let probe = dec.probe().clone();
    if cfg.short_videos == ShortVideoPolicy::Substitute
        && probe.num_frames < cfg.sampler.span(probe.fps)
    {
        return Err(DataError::Decode {
            path: path.clone(),
            reason: format!(
                "{} frames, shorter than one clip ({} frames at {:.2} fps)",
                probe.num_frames,
                cfg.sampler.span(probe.fps),
                probe.fps
            ),
        });
    }
    let plan = cfg.plan(
        VideoTiming {
            num_frames: probe.num_frames,
            fps: probe.fps,
        },
        epoch,
        sample,
    )?;
    let wanted: Vec<usize> = plan
        .clips
        .iter()
        .flat_map(|c| c.frames.iter().copied())
        .collect();
    let out = dec.read_frames(&wanted, Some(cfg.short_side))?;
    let (clips, views, _) = assemble(&plan, cfg, out.height, out.width, &out.rgb);
    Ok((clips, views, probe.variable_frame_rate))
}

#[cfg(not(feature = "video"))]
fn decode_sample(
    source: &VideoSource,
    cfg: &LoaderConfig,
    epoch: u64,
    sample: usize,
) -> Result<DecodedSample, DataError> {
    match source {
        VideoSource::FrameDir { .. } => decode_frame_folder(source, cfg, epoch, sample),
        VideoSource::File(p) => Err(DataError::Decode {
            path: p.clone(),
            reason: "rho-data was built without the `video` feature".into(),
        }),
    }
}

/// Frame folders carry no timing; they are taken as `frame_folder_fps`.
fn decode_frame_folder(
    source: &VideoSource,
    cfg: &LoaderConfig,
    epoch: u64,
    sample: usize,
) -> Result<DecodedSample, DataError> {
    let VideoSource::FrameDir { dir, total_frames } = source else {
        return Err(DataError::Decode {
            path: source.path().to_path_buf(),
            reason: "not a frame folder".into(),
        });
    };
    let timing = VideoTiming {
        num_frames: *total_frames,
        fps: cfg.frame_folder_fps,
    };
    if cfg.short_videos == ShortVideoPolicy::Substitute
        && *total_frames < cfg.sampler.span(timing.fps)
    {
        return Err(DataError::Decode {
            path: dir.clone(),
            reason: format!("{total_frames} frames, shorter than one clip"),
        });
    }
    let plan = cfg.plan(timing, epoch, sample)?;
    let wanted: Vec<usize> = plan
        .clips
        .iter()
        .flat_map(|c| c.frames.iter().copied())
        .collect();
    let (h, w, rgb) =
        crate::frames::read_frame_folder(dir, *total_frames, &wanted, Some(cfg.short_side))?;
    Ok(assemble(&plan, cfg, h, w, &rgb))
}

/// Cuts the decoded frames (clip after clip, T frames each) into clips, and says which clip each
/// view uses: for ρ = 1 both views crop the one clip.
fn assemble(
    plan: &crate::sampler::ClipPlan,
    cfg: &LoaderConfig,
    h: usize,
    w: usize,
    rgb: &[u8],
) -> DecodedSample {
    let t = cfg.sampler.frames;
    let fb = h * w * 3;
    let clips = (0..plan.clips.len())
        .map(|c| ClipPixels::from_u8(t, h, w, &rgb[c * t * fb..(c + 1) * t * fb]))
        .collect();
    let views = match cfg.views {
        ViewMode::Rho if cfg.sampler.rho == 1 => vec![0, 0],
        ViewMode::Rho => plan.output_order.clone(),
        ViewMode::Single => vec![0],
        ViewMode::Test { .. } | ViewMode::Centre => (0..plan.clips.len()).collect(),
    };
    (clips, views, false)
}
