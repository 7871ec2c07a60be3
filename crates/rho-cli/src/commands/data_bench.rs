//! `rho data bench`: decode throughput of the ρ-clip recipe on an index, single-threaded, and the
//! exact frame plan written as JSON so `scripts/bench_data.py` times PyAV and decord on the very
//! same frames.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use rho_data::decode::VideoDecoder;
use rho_data::sampler::{ClipSamplerConfig, VideoTiming};
use rho_data::VideoSource;
use serde::Serialize;

#[derive(Args, Debug)]
pub struct DataBenchArgs {
    #[command(flatten)]
    pub index: crate::index_args::IndexArgs,
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    #[arg(long, default_value_t = 8)]
    pub stride: usize,
    #[arg(long, default_value_t = 4)]
    pub rho: usize,
    /// Short side of the decoded frames.
    #[arg(long, default_value_t = 256)]
    pub short_side: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the frame plan (path → frame indices) for the PyAV/decord comparison.
    #[arg(long)]
    pub plan_out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
    /// Time the whole loader instead (decode + augmentation + batching, N workers) for one epoch.
    #[arg(long)]
    pub loader: bool,
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Output crop size of the loader.
    #[arg(long, default_value_t = 224)]
    pub size: usize,
}

#[derive(Serialize)]
struct PlanItem {
    path: String,
    frames: Vec<usize>,
    /// Output size of the decoded frames.
    width: u32,
    height: u32,
}

#[derive(Serialize)]
struct Report {
    engine: &'static str,
    videos: usize,
    clips: usize,
    seconds: f64,
    clips_per_s: f64,
    ms_per_video: f64,
    cpu_s: f64,
    ms_per_video_cpu: f64,
    frames_decoded: usize,
    seeks: usize,
    failed: usize,
}

pub fn run(a: &DataBenchArgs) -> Result<()> {
    let index = a.index.load()?;
    if a.loader {
        return run_loader(a, index);
    }
    let sampler = ClipSamplerConfig {
        frames: a.frames,
        stride: a.stride,
        rho: a.rho,
        max_timespan_s: None,
    };
    let started = Instant::now();
    let cpu0 = process_cpu_seconds();
    let tally = decode_all(a, &index, &sampler);
    let seconds = started.elapsed().as_secs_f64();
    let cpu_s = process_cpu_seconds() - cpu0;
    let r = Report::new(&tally, seconds, cpu_s);
    if let Some(p) = &a.plan_out {
        rho_model::weights::write_atomically(p, serde_json::to_string(&tally.plan)?.as_bytes())
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    print_report(a, &r)
}

/// Counters of the decode pass; the plan records exactly what was decoded so the Python side
/// can replay it.
#[derive(Default)]
struct Tally {
    plan: Vec<PlanItem>,
    decoded: usize,
    seeks: usize,
    failed: usize,
    clips: usize,
    videos: usize,
}

/// What decoding one video's clips produced.
struct Decoded {
    wanted: Vec<usize>,
    decoded: usize,
    seeks: usize,
    size: (u32, u32),
}

/// Decodes the clips of every video file of the index; failures are counted, not fatal, since
/// the benchmark is about throughput on whatever decodes. Frame folders are skipped.
fn decode_all(
    a: &DataBenchArgs,
    index: &rho_data::VideoIndex,
    sampler: &ClipSamplerConfig,
) -> Tally {
    let mut t = Tally::default();
    for (i, e) in index.entries.iter().enumerate() {
        let VideoSource::File(path) = &e.source else {
            continue;
        };
        match decode_one(a, sampler, path, i as u64) {
            Ok(d) => {
                t.decoded += d.decoded;
                t.seeks += d.seeks;
                t.clips += a.rho;
                t.videos += 1;
                let (width, height) = d.size;
                t.plan.push(PlanItem {
                    path: path.display().to_string(),
                    frames: d.wanted,
                    width,
                    height,
                });
            }
            Err(_) => t.failed += 1,
        }
    }
    t
}

/// Plans the ρ clips of one video (seeded by its position in the index, so the plan is
/// reproducible) and decodes their frames.
fn decode_one(
    a: &DataBenchArgs,
    sampler: &ClipSamplerConfig,
    path: &std::path::Path,
    video: u64,
) -> Result<Decoded> {
    let mut dec = VideoDecoder::open(path)?;
    let p = dec.probe();
    let cp = sampler.plan(
        VideoTiming {
            num_frames: p.num_frames,
            fps: p.fps,
        },
        a.seed,
        0,
        video,
    )?;
    let wanted: Vec<usize> = cp
        .clips
        .iter()
        .flat_map(|c| c.frames.iter().copied())
        .collect();
    let out = dec.read_frames(&wanted, Some(a.short_side))?;
    Ok(Decoded {
        wanted,
        decoded: out.decoded,
        seeks: out.seeks,
        size: dec.output_size(Some(a.short_side)),
    })
}

impl Report {
    fn new(t: &Tally, seconds: f64, cpu_s: f64) -> Self {
        Report {
            engine: "rho",
            videos: t.videos,
            clips: t.clips,
            seconds,
            clips_per_s: t.clips as f64 / seconds,
            ms_per_video: seconds * 1e3 / t.videos.max(1) as f64,
            cpu_s,
            ms_per_video_cpu: cpu_s * 1e3 / t.videos.max(1) as f64,
            frames_decoded: t.decoded,
            seeks: t.seeks,
            failed: t.failed,
        }
    }
}

/// One JSON object for `scripts/bench_data.py` to compare against, or one human-readable line.
fn print_report(a: &DataBenchArgs, r: &Report) -> Result<()> {
    if a.json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "rho: {} videos, {} clips of {}×{} (ρ = {}) at short side {}: {:.2} CPU-s, {:.1} CPU-ms per video (wall {:.2} s, {:.1} clips/s), {} frames decoded, {} seeks, {} failed",
            r.videos, r.clips, a.frames, a.stride, a.rho, a.short_side, r.cpu_s, r.ms_per_video_cpu, r.seconds, r.clips_per_s, r.frames_decoded, r.seeks, r.failed
        );
    }
    Ok(())
}

/// User + system CPU time of this process, in seconds.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return f64::NAN;
    }
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// One epoch of the full loader: clips/s and the share of bad videos.
fn run_loader(a: &DataBenchArgs, index: rho_data::VideoIndex) -> Result<()> {
    use rho_data::VideoLoader;
    let cfg = loader_config(a);
    let views = cfg.views();
    let mut loader = VideoLoader::new(index, cfg)?;
    let started = Instant::now();
    let cpu0 = process_cpu_seconds();
    let mut batches = 0;
    for b in loader.epoch() {
        b?;
        batches += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds() - cpu0;
    let clips = batches * a.batch * views;
    let bad = loader.bad.seen.lock().map(|m| m.len()).unwrap_or(0);
    println!(
        "rho loader: {batches} batches [{}, {views}, 3, {}, {}, {}] with {} workers in {secs:.2} s: {:.1} clips/s, {:.1} CPU-ms per video, {bad} bad videos substituted",
        a.batch,
        a.frames,
        a.size,
        a.size,
        a.workers,
        clips as f64 / secs,
        cpu * 1e3 / (batches * a.batch).max(1) as f64
    );
    Ok(())
}

/// The loader as training would run it (padding short videos, substituting bad ones), sized by
/// the benchmark's flags.
fn loader_config(a: &DataBenchArgs) -> rho_data::LoaderConfig {
    use rho_data::augment::AugmentConfig;
    use rho_data::{LoaderConfig, ShortVideoPolicy};
    LoaderConfig {
        batch_size: a.batch,
        workers: a.workers,
        prefetch: 2,
        seed: a.seed,
        sampler: ClipSamplerConfig {
            frames: a.frames,
            stride: a.stride,
            rho: a.rho,
            max_timespan_s: None,
        },
        augment: AugmentConfig {
            size: a.size,
            ..AugmentConfig::default()
        },
        short_side: a.short_side,
        decode_timeout_s: 60.0,
        max_substitutions: 10,
        short_videos: ShortVideoPolicy::Pad,
        frame_folder_fps: 30.0,
        views: Default::default(),
        shard: Default::default(),
    }
}
