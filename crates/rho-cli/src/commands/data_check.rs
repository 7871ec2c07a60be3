//! `rho data check`: the dataset doctor. Opens every video of an index (or a folder) and reports
//! what would hurt training: undecodable files, frame counts the container misstates, variable
//! frame rates, videos shorter than the recipe's clip span, long GOPs; writes the bad paths to a
//! quarantine file and estimates the decode cost of an epoch. It exits 0 once the scan completes.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rho_data::decode::{VideoDecoder, VideoProbe};
use rho_data::sampler::ClipSamplerConfig;
use rho_data::{DataError, VideoEntry, VideoSource};

#[derive(Args, Debug)]
pub struct DataCheckArgs {
    #[command(flatten)]
    pub index: crate::index_args::IndexArgs,
    /// Frames per clip and stride of the recipe (for the too-short check and the cost estimate).
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    #[arg(long, default_value_t = 8)]
    pub stride: usize,
    #[arg(long, default_value_t = 2)]
    pub rho: usize,
    /// Also decode every frame (slow) to compare the container's count with the decoded one.
    #[arg(long)]
    pub full: bool,
    /// Write the paths of bad entries here, one per line.
    #[arg(long)]
    pub quarantine: Option<PathBuf>,
    /// Print every entry, not only the problems.
    #[arg(long)]
    pub verbose: bool,
    /// Seconds one file may take to be checked before it is reported as blocking (a stalled
    /// network mount) and skipped.
    #[arg(long, default_value_t = 60.0)]
    pub timeout_s: f64,
}

/// How much of a file the check decodes.
#[derive(Clone, Copy)]
enum Decode {
    /// The header only.
    None,
    /// The first 64 frames, to estimate the decode speed.
    Calibrate,
    /// Every frame (`--full`).
    All,
}

/// One file's findings, gathered off the caller's thread.
struct FileScan {
    probe: VideoProbe,
    decoded: usize,
    seconds: f64,
    /// With `--full`: whether frames were missing, or the decode error.
    full: Option<Result<bool, DataError>>,
}

/// Opens and probes `file` and decodes what `work` asks.
fn scan_file(file: &Path, work: Decode) -> Result<FileScan, DataError> {
    let started = Instant::now();
    let mut dec = VideoDecoder::open(file)?;
    let probe = dec.probe().clone();
    let mut scan = FileScan {
        decoded: 0,
        seconds: 0.0,
        full: None,
        probe,
    };
    let n = scan.probe.num_frames;
    if n < 2 {
        return Ok(scan);
    }
    let decoded = match work {
        Decode::None => return Ok(scan),
        Decode::Calibrate => dec.read_frames(&(0..n.min(64)).collect::<Vec<_>>(), Some(256)),
        Decode::All => dec.read_frames(&(0..n).collect::<Vec<_>>(), Some(64)),
    };
    match (work, decoded) {
        (Decode::All, Err(e)) => scan.full = Some(Err(e)),
        (_, Err(_)) => {}
        (_, Ok(out)) => {
            scan.decoded = out.decoded;
            scan.seconds = started.elapsed().as_secs_f64();
            if let Decode::All = work {
                scan.full = Some(Ok(!out.missing.is_empty()));
            }
        }
    }
    Ok(scan)
}

#[derive(Default)]
struct Tally {
    ok: usize,
    bad: Vec<(PathBuf, String)>,
    short: Vec<PathBuf>,
    vfr: Vec<PathBuf>,
    count_mismatch: Vec<PathBuf>,
    frames_per_epoch: f64,
    decode_seconds: f64,
    decoded_frames: usize,
    max_gop: usize,
}

pub fn run(a: &DataCheckArgs) -> Result<()> {
    let index = a.index.load()?;
    let sampler = ClipSamplerConfig {
        frames: a.frames,
        stride: a.stride,
        rho: a.rho,
        max_timespan_s: None,
    };
    sampler.validate()?;
    let mut c = Checker {
        a,
        sampler,
        bar: progress_bar(index.len()),
        t: Tally::default(),
    };
    for e in &index.entries {
        c.bar.inc(1);
        c.check_entry(e);
    }
    c.bar.finish_and_clear();
    let t = c.t;

    print_summary(a, index.len(), &sampler, &t);
    print_problem_paths(&t);
    print_decode_estimate(a, &t);
    if let Some(q) = &a.quarantine {
        write_quarantine(q, &t)?;
    }
    Ok(())
}

fn progress_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} videos, {elapsed} elapsed, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The scan's state, bundled so the per-entry checks share it without long parameter lists.
struct Checker<'a> {
    a: &'a DataCheckArgs,
    sampler: ClipSamplerConfig,
    bar: ProgressBar,
    t: Tally,
}

impl Checker<'_> {
    fn check_entry(&mut self, e: &VideoEntry) {
        let path = e.source.path().to_path_buf();
        match &e.source {
            VideoSource::File(f) => self.check_file(path, f),
            VideoSource::FrameDir { dir, total_frames } => {
                self.check_frame_dir(path, dir, *total_frames)
            }
        }
    }

    /// Frame folders: the listed count against the JPEGs present, and the first and last
    /// frames must decode.
    fn check_frame_dir(&mut self, path: PathBuf, dir: &Path, total_frames: usize) {
        // Every frame with --full (0-byte or garbage JPEGs anywhere), else the first and last.
        let frames: Vec<usize> = match self.a.full {
            true => (0..total_frames).collect(),
            false => vec![0, total_frames.saturating_sub(1)],
        };
        let d = dir.to_path_buf();
        let deadline = Duration::from_secs_f64(self.a.timeout_s.max(0.001));
        let scan = rho_data::with_deadline(dir, deadline, "checking", move || {
            let present = std::fs::read_dir(&d)
                .map(|r| {
                    r.filter_map(|e| e.ok())
                        .filter(|e| e.file_name().to_string_lossy().starts_with("img_"))
                        .count()
                })
                .unwrap_or(0);
            let check = rho_data::frames::read_frame_folder(&d, total_frames, &frames, None);
            Ok((present, check))
        });
        let t = &mut self.t;
        match scan {
            Err(err) => t.bad.push((path, err.to_string())),
            Ok((0, _)) => t
                .bad
                .push((path, format!("{}: no img_*.jpg frames", dir.display()))),
            Ok((_, Err(err))) => t.bad.push((path, err.to_string())),
            Ok((n, Ok(_))) if n != total_frames => {
                t.count_mismatch.push(path);
                t.ok += 1;
            }
            Ok(_) => t.ok += 1,
        }
    }

    /// A container file: the probe's findings always count; with `--full` a failed decode
    /// makes the file bad, otherwise the first files calibrate the decode speed. The scan of
    /// one file runs under `--timeout-s`, so a file that blocks is reported, not waited for.
    fn check_file(&mut self, path: PathBuf, file: &Path) {
        // Opening a FIFO or a device would block the scan: named and skipped instead.
        if let Some(kind) = rho_data::not_a_regular_file(file) {
            self.t.bad.push((
                path,
                format!("{} is {kind}, not a video file", file.display()),
            ));
            return;
        }
        let work = match (self.a.full, self.t.decoded_frames < 2000) {
            (true, _) => Decode::All,
            (false, true) => Decode::Calibrate,
            (false, false) => Decode::None,
        };
        let f = file.to_path_buf();
        let deadline = Duration::from_secs_f64(self.a.timeout_s.max(0.001));
        let scan = match rho_data::with_deadline(file, deadline, "checking", move || {
            scan_file(&f, work)
        }) {
            Ok(s) => s,
            Err(err) => {
                self.t.bad.push((path, err.to_string()));
                return;
            }
        };
        let p = &scan.probe;
        if p.num_frames < 2 {
            let reason = format!(
                "{} has {} frame(s): no clip can be sampled",
                file.display(),
                p.num_frames
            );
            self.t.bad.push((path, reason));
            return;
        }
        self.record_probe(&path, p);
        self.t.decoded_frames += scan.decoded;
        self.t.decode_seconds += scan.seconds;
        let mut note = String::new();
        match scan.full {
            Some(Err(err)) => {
                self.t.bad.push((path, err.to_string()));
                return;
            }
            Some(Ok(missing))
                if p.container_frames.is_some_and(|c| c != scan.decoded) || missing =>
            {
                self.t.count_mismatch.push(path.clone());
                note = format!(
                    ", container says {:?}, decoded {}",
                    p.container_frames, scan.decoded
                );
            }
            _ => {}
        }
        if self.a.verbose {
            self.print_entry(&path, p, &note);
        }
        self.t.ok += 1;
    }

    /// What the container header alone tells: too short, variable frame rate, GOP length,
    /// and the expected decode work.
    fn record_probe(&mut self, path: &Path, p: &VideoProbe) {
        let t = &mut self.t;
        let span = self.sampler.span(p.fps);
        t.max_gop = t.max_gop.max(p.max_gop());
        // A clip needs `span` frames; shorter videos are padded by clamping (docs/data.md §5).
        if p.num_frames < span {
            t.short.push(path.to_path_buf());
        }
        if p.variable_frame_rate {
            t.vfr.push(path.to_path_buf());
        }
        // Expected decode work per sample: each clip decodes from its keyframe (half a GOP on
        // average) through its span.
        let per_clip = (span + p.max_gop() / 2).min(p.num_frames);
        t.frames_per_epoch += (self.a.rho * per_clip).min(p.num_frames) as f64;
    }

    fn print_entry(&self, path: &Path, p: &VideoProbe, note: &str) {
        let line = format!(
            "{}: {} frames{} at {:.2} fps, {:.1} s, GOP ≤ {}, {}{}",
            path.display(),
            p.num_frames,
            p.container_frames
                .map(|c| format!(" (container {c})"))
                .unwrap_or_default(),
            p.fps,
            p.duration_s,
            p.max_gop(),
            p.codec,
            note
        );
        // Suspending the bar keeps the line and the bar from garbling each other.
        self.bar.suspend(|| println!("{line}"));
    }
}

fn print_summary(a: &DataCheckArgs, entries: usize, sampler: &ClipSamplerConfig, t: &Tally) {
    println!("checked {} entries of {}", entries, a.index.index.display());
    println!("  decodable              {}", t.ok);
    println!("  undecodable / missing  {}", t.bad.len());
    println!(
        "  shorter than one clip  {} (span {:.2} s for {}×{})",
        t.short.len(),
        sampler.span_seconds(),
        a.frames,
        a.stride
    );
    println!("  variable frame rate    {}", t.vfr.len());
    println!(
        "  frame-count mismatch   {}{}",
        t.count_mismatch.len(),
        if a.full { "" } else { " (files: with --full)" }
    );
    println!("  longest GOP            {} frames", t.max_gop);
}

fn print_problem_paths(t: &Tally) {
    for (_, why) in &t.bad {
        println!("  BAD   {why}");
    }
    for p in &t.short {
        println!("  SHORT {}", p.display());
    }
    for p in &t.vfr {
        println!("  VFR   {}", p.display());
    }
    for p in &t.count_mismatch {
        println!("  COUNT {}", p.display());
    }
}

/// Extrapolates the measured per-frame decode time to an epoch; silent when nothing was timed.
fn print_decode_estimate(a: &DataCheckArgs, t: &Tally) {
    if t.decoded_frames > 0 && t.decode_seconds > 0.0 {
        let per_frame = t.decode_seconds / t.decoded_frames as f64;
        println!(
            "  decode cost estimate   {:.0} frames per epoch (ρ = {}), about {:.1} CPU-minutes at {:.0} frames/s per core",
            t.frames_per_epoch,
            a.rho,
            t.frames_per_epoch * per_frame / 60.0,
            1.0 / per_frame
        );
    }
}

/// Written atomically so an interrupted run never leaves a truncated list behind. One path per
/// line; a backslash, newline or carriage return inside a name is escaped (`\\`, `\n`, `\r`),
/// so every name survives.
fn write_quarantine(q: &Path, t: &Tally) -> Result<()> {
    let escape = |p: &Path| {
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r")
    };
    let body: String = t
        .bad
        .iter()
        .map(|(p, _)| format!("{}\n", escape(p)))
        .collect();
    rho_model::weights::write_atomically(q, body.as_bytes())
        .with_context(|| format!("cannot write {}", q.display()))?;
    println!(
        "  quarantine list        {} ({} paths)",
        q.display(),
        t.bad.len()
    );
    Ok(())
}
