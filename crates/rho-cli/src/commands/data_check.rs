//! `rho data check`: the dataset doctor. Opens every video of an index (or a folder) and reports
//! what would hurt training: undecodable files, frame counts the container misstates, variable
//! frame rates, videos shorter than the recipe's clip span, long GOPs; writes the bad paths to a
//! quarantine file and estimates the decode cost of an epoch. It exits 0 once the scan completes.

use std::path::{Path, PathBuf};
use std::time::Instant;

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
        let t = &mut self.t;
        let present = std::fs::read_dir(dir)
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().starts_with("img_"))
                    .count()
            })
            .unwrap_or(0);
        // Every frame with --full (0-byte or garbage JPEGs anywhere), else the first and last.
        let frames: Vec<usize> = match self.a.full {
            true => (0..total_frames).collect(),
            false => vec![0, total_frames.saturating_sub(1)],
        };
        let check = rho_data::frames::read_frame_folder(dir, total_frames, &frames, None);
        match (present, check) {
            (0, _) => t
                .bad
                .push((path, format!("{}: no img_*.jpg frames", dir.display()))),
            (_, Err(err)) => t.bad.push((path, err.to_string())),
            (n, Ok(_)) if n != total_frames => {
                t.count_mismatch.push(path);
                t.ok += 1;
            }
            _ => t.ok += 1,
        }
    }

    /// A container file: the probe's findings always count; with `--full` a failed decode
    /// makes the file bad, otherwise the first files calibrate the decode speed.
    fn check_file(&mut self, path: PathBuf, file: &Path) {
        // Opening a FIFO or a device would block the scan: named and skipped instead.
        if let Some(kind) = not_a_regular_file(file) {
            self.t.bad.push((
                path,
                format!("{} is {kind}, not a video file", file.display()),
            ));
            return;
        }
        let started = Instant::now();
        let mut dec = match VideoDecoder::open(file) {
            Ok(d) => d,
            Err(err) => {
                self.t.bad.push((path, err.to_string()));
                return;
            }
        };
        let p = dec.probe().clone();
        if p.num_frames < 2 {
            let reason = format!(
                "{} has {} frame(s): no clip can be sampled",
                file.display(),
                p.num_frames
            );
            self.t.bad.push((path, reason));
            return;
        }
        self.record_probe(&path, &p);
        let mut note = String::new();
        if self.a.full {
            match self.decode_full(&mut dec, &p, &path, started) {
                Ok(n) => note = n,
                Err(err) => {
                    self.t.bad.push((path, err.to_string()));
                    return;
                }
            }
        } else if self.t.decoded_frames < 2000 {
            // Calibrate the decode speed on the first videos.
            let n = p.num_frames.min(64);
            if let Ok(out) = dec.read_frames(&(0..n).collect::<Vec<_>>(), Some(256)) {
                self.t.decoded_frames += out.decoded;
                self.t.decode_seconds += started.elapsed().as_secs_f64();
            }
        }
        if self.a.verbose {
            self.print_entry(&path, &p, &note);
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

    /// Decodes every frame to catch containers that misstate their frame count; returns the
    /// note for the verbose line.
    fn decode_full(
        &mut self,
        dec: &mut VideoDecoder,
        p: &VideoProbe,
        path: &Path,
        started: Instant,
    ) -> Result<String, DataError> {
        let t = &mut self.t;
        let out = dec.read_frames(&(0..p.num_frames).collect::<Vec<_>>(), Some(64))?;
        t.decoded_frames += out.decoded;
        t.decode_seconds += started.elapsed().as_secs_f64();
        if p.container_frames.is_some_and(|c| c != out.decoded) || !out.missing.is_empty() {
            t.count_mismatch.push(path.to_path_buf());
            return Ok(format!(
                ", container says {:?}, decoded {}",
                p.container_frames, out.decoded
            ));
        }
        Ok(String::new())
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

/// What `path` is when it is not a regular file (following symlinks).
fn not_a_regular_file(path: &Path) -> Option<&'static str> {
    let t = std::fs::metadata(path).ok()?.file_type();
    if t.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return Some("a FIFO");
        }
        if t.is_char_device() || t.is_block_device() {
            return Some("a device");
        }
    }
    Some(if t.is_dir() {
        "a directory"
    } else {
        "a special file"
    })
}
