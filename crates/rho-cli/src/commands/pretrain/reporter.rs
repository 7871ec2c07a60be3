//! `Reporter`: what a user sees of a run while it trains. A progress bar with indicatif's own
//! rate and ETA, one line per step in `metrics.jsonl` (opened once), the same scalars for
//! TensorBoard (`events.out.tfevents.rho`), and the loss, learning-rate and collapse plots
//! refreshed every few steps. A resumed run continues the metrics and the events from the
//! checkpoint's step: the killed run's later steps are dropped, so every step appears once, and
//! the plots draw the whole run.

use std::fs::File;
use std::io::{LineWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rho_train::tensorboard::EventWriter;
use rho_train::StepLog;

/// What the plots show of one step.
#[derive(Debug, Clone, Copy)]
pub struct StepRecord {
    pub step: f64,
    pub loss: f64,
    pub lr: f64,
    pub emb_std: f64,
    pub pos_sim: f64,
    pub cross_sim: f64,
    pub target_mean_norm: f64,
    pub dead_units: f64,
}

impl StepRecord {
    fn of(log: &StepLog) -> Self {
        let m = |k: &str| log.metrics.get(k).copied().unwrap_or(f64::NAN);
        Self::from_parts(log.step as f64, log.lr, m)
    }

    /// A `metrics.jsonl` step line, read back.
    fn from_json(line: &serde_json::Value) -> Option<Self> {
        let (step, lr) = (line.get("step")?.as_f64()?, line.get("lr")?.as_f64()?);
        let metrics = line.get("metrics")?;
        let m = |k: &str| metrics.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        Some(Self::from_parts(step, lr, m))
    }

    fn from_parts(step: f64, lr: f64, m: impl Fn(&str) -> f64) -> Self {
        Self {
            step,
            loss: m("loss"),
            lr,
            emb_std: m("emb_std"),
            pos_sim: m("pos_sim"),
            cross_sim: m("cross_sim"),
            target_mean_norm: m("target_mean_norm"),
            dead_units: m("dead_units"),
        }
    }
}

/// Time and clips summed over the steps of this process.
#[derive(Debug, Default)]
struct Totals {
    wait_s: f64,
    step_s: f64,
    clips: usize,
    steps: usize,
}

pub struct Reporter {
    dir: PathBuf,
    metrics_path: PathBuf,
    metrics: LineWriter<File>,
    events: EventWriter,
    bar: ProgressBar,
    plot_every: usize,
    history: Vec<StepRecord>,
    totals: Totals,
    /// The first failed write (reported when the run ends, not by stopping it).
    error: Option<anyhow::Error>,
    /// GPU backends: the kernels compiled and tuned so far, reported while they grow.
    warmup: Option<KernelWarmup>,
}

/// The first steps on a GPU compile and autotune kernels (minutes on a cold cache); saying so,
/// with counts and time, keeps them from looking like a hang.
struct KernelWarmup {
    log: &'static crate::kernels::KernelLog,
    seen: crate::kernels::KernelCounts,
    /// The logs' size when `seen` was counted.
    seen_size: u64,
    /// Seconds of the steps that compiled or tuned something.
    spent_s: f64,
}

impl KernelWarmup {
    /// A line when this step compiled or tuned kernels.
    fn step(&mut self, log: &StepLog) -> Option<String> {
        let size = self.log.size();
        if size == self.seen_size {
            return None;
        }
        self.seen_size = size;
        let now = self.log.counts();
        if now == self.seen {
            return None;
        }
        let new = (
            now.compiled.saturating_sub(self.seen.compiled),
            now.autotuned.saturating_sub(self.seen.autotuned),
        );
        self.seen = now;
        self.spent_s += log.step_s;
        Some(format!(
            "step {}: compiling/tuning kernels: {} compiled and {} shapes autotuned in this step ({} and {} so far, {:.1} s of steps); cache {}",
            log.step,
            new.0,
            new.1,
            now.compiled,
            now.autotuned,
            self.spent_s,
            self.log.cache_dir.display()
        ))
    }
}

impl Reporter {
    /// A reporter writing into `dir`; `resumed_at`: the step a resumed run continues from (the
    /// earlier run's metrics before it are kept, the rest dropped).
    pub fn create(dir: &Path, resumed_at: Option<usize>, plot_every: usize) -> Result<Self> {
        let metrics_path = dir.join("metrics.jsonl");
        let kept = match resumed_at {
            Some(step) => lines_before(&metrics_path, step)?,
            None => Vec::new(),
        };
        let text: String = kept.iter().map(|l| format!("{l}\n")).collect();
        rho_model::weights::write_atomically(&metrics_path, text.as_bytes())
            .with_context(|| format!("cannot write {}", metrics_path.display()))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&metrics_path)
            .with_context(|| format!("cannot write {}", metrics_path.display()))?;
        let events = EventWriter::create(dir, resumed_at.map(|s| s as i64)).with_context(|| {
            format!(
                "cannot write {}",
                dir.join(rho_train::tensorboard::FILE_NAME).display()
            )
        })?;
        let history = kept
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter_map(|v| StepRecord::from_json(&v))
            .collect();
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} | {per_sec:.1} | ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics_path,
            metrics: LineWriter::new(file),
            events,
            bar,
            plot_every,
            history,
            totals: Totals::default(),
            error: None,
            warmup: crate::kernels::log().map(|log| KernelWarmup {
                log,
                seen: log.counts(),
                seen_size: log.size(),
                spent_s: 0.0,
            }),
        })
    }

    pub fn step(&mut self, log: &StepLog) {
        if self.totals.steps == 0 {
            self.bar.set_length(log.total_steps as u64);
            self.bar.set_position(log.step as u64);
            self.bar.reset_eta();
        }
        if let Some(line) = self.warmup.as_mut().and_then(|w| w.step(log)) {
            self.bar.println(line);
        }
        self.bar.set_position(log.step as u64 + 1);
        let t = &mut self.totals;
        (t.wait_s, t.step_s) = (t.wait_s + log.data_wait_s, t.step_s + log.step_s);
        (t.clips, t.steps) = (t.clips + log.clips, t.steps + 1);
        let r = StepRecord::of(log);
        self.bar.set_message(format!(
            "ep {:.2} loss {:.4} lr {:.4} m {:.4} cos same/cross {:.2}/{:.2} | {:.1} clips/s, data wait {:.0}%",
            log.epoch,
            r.loss,
            log.lr,
            log.metrics.get("momentum").copied().unwrap_or(f64::NAN),
            r.pos_sim,
            r.cross_sim,
            t.clips as f64 / t.step_s.max(1e-9),
            100.0 * t.wait_s / t.step_s.max(1e-9),
        ));
        self.history.push(r);
        if self.plot_every > 0 && (log.step + 1).is_multiple_of(self.plot_every) {
            let result = write_plots(&self.dir, &self.history);
            self.keep_error(result);
        }
        let line = serde_json::to_string(log).map_err(anyhow::Error::from);
        self.write_line(line);
        let result = self.write_events(log);
        self.keep_error(result);
    }

    /// The step's scalars for TensorBoard: every metric under `train/`, the learning rate, and
    /// the throughput and data-wait share under `perf/`.
    fn write_events(&mut self, log: &StepLog) -> Result<()> {
        let step = log.step as i64;
        let e = &mut self.events;
        e.scalar("train/lr", step, log.lr)?;
        e.scalar("train/epoch", step, log.epoch)?;
        for (key, value) in &log.metrics {
            e.scalar(&format!("train/{key}"), step, *value)?;
        }
        if log.step_s > 0.0 {
            e.scalar("perf/clips_per_s", step, log.clips as f64 / log.step_s)?;
            e.scalar("perf/data_wait_share", step, log.data_wait_s / log.step_s)?;
        }
        Ok(e.flush()?)
    }

    /// One more scalar for TensorBoard (e.g. the kNN monitor's), at training step `step`.
    pub fn scalar(&mut self, tag: &str, step: usize, value: f64) {
        let e = &mut self.events;
        let result = e.scalar(tag, step as i64, value).and_then(|()| e.flush());
        self.keep_error(result.map_err(anyhow::Error::from));
    }

    /// The run's output folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One more line of `metrics.jsonl` (e.g. the kNN monitor's).
    pub fn write_line(&mut self, line: Result<String>) {
        let result = line.and_then(|l| Ok(writeln!(self.metrics, "{l}")?));
        self.keep_error(result);
    }

    /// Remembers the first failed write, reported by [`Reporter::finish`].
    pub fn keep_error(&mut self, result: Result<()>) {
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }

    /// Clears the bar, writes the final plots, prints the throughput, and reports the first
    /// failed write.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.bar.finish_and_clear();
        if let Some(e) = self.error.take() {
            return Err(e.context(format!("writing {}", self.metrics_path.display())));
        }
        self.metrics
            .flush()
            .with_context(|| format!("writing {}", self.metrics_path.display()))?;
        write_plots(&self.dir, &self.history)?;
        let t = &self.totals;
        if t.step_s > 0.0 {
            eprintln!(
                "  {:.1} clips/s, {:.2} steps/s, data wait {:.0}% of the step time",
                t.clips as f64 / t.step_s,
                t.steps as f64 / t.step_s,
                100.0 * t.wait_s / t.step_s
            );
        }
        Ok(self.metrics_path)
    }
}

/// The lines of `path` before the first step line at or after `step` (a partial last line of a
/// killed run is dropped too).
fn lines_before(path: &Path, step: usize) -> Result<Vec<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut kept = Vec::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v.get("step")
            .and_then(|s| s.as_u64())
            .is_some_and(|s| s >= step as u64)
        {
            break;
        }
        kept.push(line.to_string());
    }
    Ok(kept)
}

/// loss.png, lr.png and collapse.png in the output folder. The collapse plot puts the
/// same-video similarity next to the cross-video one: learning keeps them apart, a trivial
/// solution (every prediction alike) brings them together, with ‖mean target‖ near 1.
fn write_plots(dir: &Path, h: &[StepRecord]) -> Result<()> {
    use rho_train::plot::{LinePlot, Series};
    let series = |name: &str, color: [u8; 3], f: fn(&StepRecord) -> f64| Series {
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
            "loss",
            true,
            vec![series("loss", [200, 30, 30], |r| r.loss)],
        ),
        (
            "lr.png",
            "learning rate",
            "learning rate",
            false,
            vec![series("lr", [30, 30, 200], |r| r.lr)],
        ),
        (
            "collapse.png",
            "collapse monitors (same ≈ cross video: a trivial solution)",
            "cosine / norm / fraction",
            true,
            vec![
                series("same-video cos", [150, 30, 150], |r| r.pos_sim),
                series("cross-video cos", [230, 140, 20], |r| r.cross_sim),
                series("|mean target|", [30, 120, 200], |r| r.target_mean_norm),
                series("dead head units", [120, 120, 120], |r| r.dead_units),
                series("embedding std x10", [30, 150, 30], |r| 10.0 * r.emb_std),
            ],
        ),
    ];
    for (file, title, y_label, smooth, series) in plots {
        let p = LinePlot {
            title: title.into(),
            x_label: "step".into(),
            y_label: y_label.into(),
            smooth,
            series,
        };
        p.save_png(&dir.join(file))
            .with_context(|| format!("cannot write {}", dir.join(file).display()))?;
    }
    Ok(())
}
