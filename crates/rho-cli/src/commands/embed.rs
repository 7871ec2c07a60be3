//! `rho embed`: features (and logits) of videos from pre-trained weights, one row per video or
//! per view, as pytorchvideo's and mmaction2's feature-extraction demos give them.
//!
//! The input is a video, a folder of videos, any index rho reads (`--format`), or a `.npy` of
//! clips already normalised. Videos go through the evaluation's test views (docs/method.md §5.1):
//! the centre clip and crop, or K uniform clips × 3 crops, averaged or kept per view. A video that
//! cannot be decoded is listed and skipped, unless `--strict`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rho_data::augment::AugmentConfig;
use rho_data::{
    ClipSamplerConfig, LoaderConfig, ShortVideoPolicy, VideoEntry, VideoIndex, VideoLoader,
    VideoSource, ViewMode,
};
use rho_model::ResNet3d;

use crate::arch::{build, WeightsArgs};
use crate::npy;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Backbone preset (see `rho models`); a `.rho` checkpoint carries its own.
    #[arg(long)]
    pub arch: Option<String>,
    /// Weights: a `.rho` checkpoint (its online backbone), rho or PyTorch `.safetensors`, or a
    /// `.pyth/.pt/.pth` pickle; their naming is detected unless --naming is given.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Run without weights, on a randomly initialised network (for smoke tests).
    #[arg(long, conflicts_with = "weights")]
    pub random_init: bool,
    #[arg(long)]
    pub naming: Option<rho_model::weights::Naming>,
    /// Accept a missing or different classification head.
    #[arg(long)]
    pub allow_partial: bool,
    /// Read weights holding NaN or infinite values (listed in a warning) instead of refusing them.
    #[arg(long)]
    pub allow_non_finite: bool,
    /// A video file, a folder of videos, an index (see --format), or a float32 `.npy` of clips
    /// [N, 3, T, H, W] already normalised.
    #[arg(long)]
    pub input: PathBuf,
    /// How an index input is laid out (`--format`, `--prefix`, ...; `rho models` lists the
    /// formats).
    #[command(flatten)]
    pub layout: crate::index_args::IndexLayout,
    /// Output features, `.npy` or `.safetensors`: [N, D], or [N, V, D] with --per-view. For
    /// videos, `OUT.videos.jsonl` lists each row's video (and label) in the same order.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the head's logits [N, K] (or [N, V, K]); the weights must have a head.
    #[arg(long)]
    pub logits: Option<PathBuf>,
    /// Videos (or .npy clips) per forward pass; a batch of videos holds views × videos clips.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Which views of each video: the centre clip and crop, or the test protocol's
    /// --clips × --crops.
    #[arg(long, value_enum, default_value_t = Views::Center)]
    pub views: Views,
    #[arg(long, default_value_t = 10)]
    pub clips: usize,
    #[arg(long, default_value_t = 3)]
    pub crops: usize,
    /// Keep one row per view instead of their mean.
    #[arg(long)]
    pub per_view: bool,
    /// Frames per clip, their stride, and the crop size (frames are resized to it on their
    /// short side first), as the weights were trained.
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    #[arg(long, default_value_t = 8)]
    pub stride: usize,
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Decoding threads.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Stop at the first video that cannot be decoded instead of skipping it.
    #[arg(long)]
    pub strict: bool,
}

/// The views `rho embed` takes of a video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Views {
    /// One clip at the middle of the video, centre crop.
    Center,
    /// --clips uniform clips × --crops spatial crops.
    Test,
}

/// Rows of features (and logits) with the views kept: [n, views, dim].
struct Rows {
    features: Vec<f32>,
    logits: Vec<f32>,
    n: usize,
    views: usize,
}

pub fn run<B: Backend>(a: &EmbedArgs, device: B::Device) -> Result<()> {
    if a.weights.is_none() && !a.random_init {
        bail!("pass --weights FILE (or --random-init to run an untrained network)");
    }
    if a.batch_size == 0 || a.workers == 0 {
        bail!("--batch-size and --workers must be at least 1");
    }
    for p in std::iter::once(&a.out).chain(&a.logits) {
        if !matches!(extension(p).as_str(), "npy" | "safetensors") {
            bail!("{} must end in .npy or .safetensors", p.display());
        }
    }
    let is_npy = extension(&a.input) == "npy";
    let model = load_model::<B>(a, &device)?;
    if a.logits.is_some() && model.head.is_none() {
        bail!("--logits needs weights with a classification head; these have none");
    }
    let started = std::time::Instant::now();
    let (rows, what) = if is_npy {
        (embed_clips(a, &model, &device)?, "clips".to_string())
    } else {
        let index = video_index(a)?;
        let (rows, kept) = embed_videos(a, &model, &index, &device)?;
        write_video_list(&sidecar(&a.out), &index, &kept)?;
        let what = format!("videos ({} views each)", rows.views);
        (rows, what)
    };
    let shape = |dim: usize| match (a.per_view, rows.views) {
        (true, v) => vec![rows.n, v, dim],
        (false, _) => vec![rows.n, dim],
    };
    let dim = rows.features.len() / (rows.n * rows.views).max(1);
    let feats = if a.per_view {
        rows.features.clone()
    } else {
        mean_views(&rows.features, rows.views, dim)
    };
    write_array(&a.out, "features", &shape(dim), &feats)?;
    if let Some(p) = &a.logits {
        let k = rows.logits.len() / (rows.n * rows.views).max(1);
        let l = if a.per_view {
            rows.logits.clone()
        } else {
            mean_views(&rows.logits, rows.views, k)
        };
        write_array(p, "logits", &shape(k), &l)?;
    }
    eprintln!(
        "embedded {} {what} → {} {:?} in {:.1} s",
        rows.n,
        a.out.display(),
        shape(dim),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn extension(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// `OUT.videos.jsonl` beside the features.
fn sidecar(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".videos.jsonl");
    PathBuf::from(name)
}

/// The backbone (with its head when the weights have one): a `.rho` checkpoint through the
/// evaluation's loader, any other file through the weight converter.
fn load_model<B: Backend>(a: &EmbedArgs, device: &B::Device) -> Result<ResNet3d<B>> {
    if let Some(w) = a.weights.as_deref().filter(|w| extension(w) == "rho") {
        let source = rho_train::eval::WeightSource::File(w.to_path_buf());
        return Ok(rho_train::eval::source::load_backbone::<B>(
            &source,
            a.arch.as_deref(),
            device,
        )?);
    }
    build::<B>(
        a.arch.as_deref().unwrap_or("slow_r50"),
        WeightsArgs {
            path: a.weights.as_deref(),
            naming: a.naming,
            allow_partial: a.allow_partial,
            num_classes: None,
            non_finite: crate::arch::non_finite(a.allow_non_finite),
        },
        device,
    )
}

/// A single video file as a one-entry index, else the index or folder under `--format`.
fn video_index(a: &EmbedArgs) -> Result<VideoIndex> {
    let is_video = a.input.is_file()
        && matches!(
            extension(&a.input).as_str(),
            "mp4" | "avi" | "mkv" | "webm" | "mov" | "m4v" | "mpg" | "mpeg" | "ogv"
        );
    if is_video {
        return Ok(VideoIndex {
            entries: vec![VideoEntry {
                source: VideoSource::File(a.input.clone()),
                label: None,
            }],
            classes: Vec::new(),
        });
    }
    let index = a
        .layout
        .spec(a.input.clone())
        .load()
        .with_context(|| format!("reading the videos of {}", a.input.display()))?;
    if index.is_empty() {
        bail!("{} lists no videos", a.input.display());
    }
    Ok(index)
}

/// The evaluation's test views (docs/method.md §5.1) at the flags' clip shape.
fn loader_config(a: &EmbedArgs) -> LoaderConfig {
    let views = match a.views {
        Views::Center => ViewMode::Centre,
        Views::Test => ViewMode::Test {
            clips: a.clips.max(1),
            crops: a.crops.max(1),
        },
    };
    LoaderConfig {
        batch_size: a.batch_size,
        workers: a.workers,
        prefetch: 2,
        seed: 0,
        sampler: ClipSamplerConfig {
            frames: a.frames,
            stride: a.stride,
            rho: 1,
            max_timespan_s: None,
        },
        augment: AugmentConfig {
            size: a.size,
            ..AugmentConfig::default()
        },
        short_side: a.size as u32,
        decode_timeout_s: 120.0,
        max_substitutions: 0,
        short_videos: ShortVideoPolicy::Pad,
        frame_folder_fps: 30.0,
        views,
        shard: Default::default(),
    }
}

/// Features of every video that decodes; returns them and the index rows they belong to.
fn embed_videos<B: Backend>(
    a: &EmbedArgs,
    model: &ResNet3d<B>,
    index: &VideoIndex,
    device: &B::Device,
) -> Result<(Rows, Vec<usize>)> {
    let cfg = loader_config(a);
    let views = cfg.views();
    let loader = VideoLoader::for_evaluation(index.clone(), cfg)?;
    let bar = progress_bar(index.len());
    let mut rows = Rows {
        features: Vec::new(),
        logits: Vec::new(),
        n: 0,
        views,
    };
    let (mut kept, mut skipped) = (Vec::new(), Vec::new());
    for part in loader.in_order_skipping_bad() {
        let part = part?;
        if let (true, Some((_, e))) = (a.strict, part.failed.first()) {
            bail!("{e} (--strict stops at the first bad video)");
        }
        skipped.extend(part.failed.iter().map(|(i, e)| (*i, e.to_string())));
        let b = part.batch;
        bar.inc((b.samples.len() + part.failed.len()) as u64);
        if b.samples.is_empty() {
            continue;
        }
        let [n, v, c, t, h, w] = b.shape;
        let x = Tensor::<B, 5>::from_data(TensorData::new(b.clips, [n * v, c, t, h, w]), device);
        forward(model, x, a.logits.is_some(), &mut rows)?;
        rows.n += n;
        kept.extend(b.samples);
    }
    bar.finish_and_clear();
    for (i, reason) in &skipped {
        eprintln!(
            "skipped {}: {reason}",
            index.entries[*i].source.path().display()
        );
    }
    if !skipped.is_empty() {
        eprintln!("{} of {} videos skipped", skipped.len(), index.len());
    }
    if rows.n == 0 {
        bail!("no video of {} could be decoded", a.input.display());
    }
    Ok((rows, kept))
}

/// Features of a `.npy` of normalised clips, `--batch-size` clips at a time.
fn embed_clips<B: Backend>(a: &EmbedArgs, model: &ResNet3d<B>, device: &B::Device) -> Result<Rows> {
    let clip = npy::read(&a.input)?;
    model
        .check_input(&clip.shape)
        .with_context(|| format!("input {}", a.input.display()))?;
    let n = clip.shape[0];
    let per_clip: usize = clip.shape[1..].iter().product();
    let mut rows = Rows {
        features: Vec::new(),
        logits: Vec::new(),
        n,
        views: 1,
    };
    for start in (0..n).step_by(a.batch_size) {
        let end = (start + a.batch_size).min(n);
        let mut shape = clip.shape.clone();
        shape[0] = end - start;
        let data = TensorData::new(clip.data[start * per_clip..end * per_clip].to_vec(), shape);
        forward(
            model,
            Tensor::<B, 5>::from_data(data, device),
            a.logits.is_some(),
            &mut rows,
        )?;
    }
    Ok(rows)
}

/// One forward pass; appends its features (and logits) to `rows`.
fn forward<B: Backend>(
    model: &ResNet3d<B>,
    x: Tensor<B, 5>,
    logits: bool,
    rows: &mut Rows,
) -> Result<()> {
    let to_vec = |t: Tensor<B, 2>| {
        t.into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("reading features back: {e:?}"))
    };
    let (f, l) = model.try_forward_with_logits(x)?;
    rows.features.extend(to_vec(f)?);
    if let (Some(l), true) = (l, logits) {
        rows.logits.extend(to_vec(l)?);
    }
    Ok(())
}

/// The mean over the `views` rows of each video of [n, views, dim].
fn mean_views(x: &[f32], views: usize, dim: usize) -> Vec<f32> {
    if views <= 1 || dim == 0 {
        return x.to_vec();
    }
    x.chunks(views * dim)
        .flat_map(|video| {
            (0..dim).map(move |d| {
                (0..views)
                    .map(|v| f64::from(video[v * dim + d]))
                    .sum::<f64>() as f32
                    / views as f32
            })
        })
        .collect()
}

/// `.npy`, or `.safetensors` holding one tensor named `name`.
fn write_array(path: &Path, name: &str, shape: &[usize], data: &[f32]) -> Result<()> {
    if extension(path) == "npy" {
        return npy::write(path, shape, data);
    }
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.to_vec(), &bytes)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let serialized =
        safetensors::serialize([(name, view)], None).map_err(|e| anyhow::anyhow!("{e}"))?;
    rho_model::weights::write_atomically(path, &serialized)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// One JSON line per output row: the video's path, and its label when the index has one.
fn write_video_list(path: &Path, index: &VideoIndex, kept: &[usize]) -> Result<()> {
    let mut text = String::new();
    for &i in kept {
        let e = &index.entries[i];
        let mut line = serde_json::json!({"path": e.source.path().display().to_string()});
        if let Some(label) = e.label {
            line["label"] = label.into();
            if let Some(name) = index.classes.get(label) {
                line["class"] = name.clone().into();
            }
        }
        text.push_str(&line.to_string());
        text.push('\n');
    }
    rho_model::weights::write_atomically(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("  embedding {bar:30} {pos}/{len} videos | ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mean_over_views_is_taken_per_video_and_dimension() {
        // 2 videos × 2 views × 3 dims.
        let x = [1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 0.0, 0.0, 0.0, 2.0, 2.0, -2.0];
        assert_eq!(mean_views(&x, 2, 3), [2.0, 3.0, 4.0, 1.0, 1.0, -1.0]);
        assert_eq!(mean_views(&x, 1, 3), x);
    }
}
