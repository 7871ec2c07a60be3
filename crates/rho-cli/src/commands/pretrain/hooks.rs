//! The CLI's hooks into the trainer: the [`Reporter`] after every step, and the kNN monitor at
//! the end of every N epochs. Nothing is written into the output folder before the first step:
//! a run the trainer refuses (a missing video, too little memory) leaves the folder as it was.

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use rho_objectives::SslNetwork;
use rho_train::{Hooks, StepLog, TrainError};

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::reporter::Reporter;

/// What the first step sets up: the run card, and the reporter's files.
pub struct ReportPlan {
    pub dir: PathBuf,
    pub resumed_at: Option<usize>,
    pub plot_every: usize,
    pub run_card: String,
}

impl ReportPlan {
    fn start(self) -> Result<Reporter> {
        let path = self.dir.join("run_card.toml");
        rho_model::weights::write_atomically(&path, self.run_card.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Reporter::create(&self.dir, self.resumed_at, self.plot_every)
    }
}

/// The kNN monitor of a run: every `every` epochs on `recipe`'s lists.
pub struct KnnMonitor {
    pub every: u64,
    pub recipe: rho_train::eval::EvalRecipe,
}

pub struct CliHooks<B: Backend> {
    plan: Option<ReportPlan>,
    reporter: Option<Reporter>,
    /// A failure to set up the reporter, reported by [`CliHooks::finish`].
    error: Option<anyhow::Error>,
    pub monitor: Option<KnnMonitor>,
    pub device: B::Device,
    /// (epoch, kNN top-1) so far, for knn.png.
    knn: Vec<(f64, f64)>,
    /// Steps done so far (the TensorBoard step of the kNN monitor).
    steps_done: usize,
}

impl<B: Backend> CliHooks<B> {
    pub fn new(plan: ReportPlan, monitor: Option<KnnMonitor>, device: B::Device) -> Self {
        Self {
            plan: Some(plan),
            reporter: None,
            error: None,
            monitor,
            device,
            knn: Vec::new(),
            steps_done: 0,
        }
    }

    /// The reporter, set up on first use.
    fn reporter(&mut self) -> Option<&mut Reporter> {
        if let Some(plan) = self.plan.take() {
            match plan.start() {
                Ok(r) => self.reporter = Some(r),
                Err(e) => self.error = Some(e),
            }
        }
        self.reporter.as_mut()
    }

    /// Writes the final plots and returns the metrics file (see [`Reporter::finish`]).
    pub fn finish(mut self) -> Result<PathBuf> {
        self.reporter();
        match (self.error.take(), self.reporter.take()) {
            (Some(e), _) => Err(e),
            (None, Some(r)) => r.finish(),
            (None, None) => anyhow::bail!("the run's reporter was never set up"),
        }
    }
}

impl<B: Backend> Hooks<Autodiff<B>> for CliHooks<B> {
    fn on_step(&mut self, log: &StepLog) {
        self.steps_done = log.step + 1;
        if let Some(r) = self.reporter() {
            r.step(log);
        }
    }

    fn on_epoch(&mut self, epoch: u64, net: &SslNetwork<Autodiff<B>>) -> Result<(), TrainError> {
        let Some(m) = &self.monitor else {
            return Ok(());
        };
        if !epoch.is_multiple_of(m.every) {
            return Ok(());
        }
        let backbone = net.backbone.valid();
        let acc = rho_train::eval::EvalJob::knn_of(&m.recipe, &backbone, &self.device)
            .map_err(|e| TrainError::Hook(format!("kNN monitor: {e}")))?;
        eprintln!(
            "  epoch {epoch}: kNN top-1 {:.1}% (k = {})",
            acc.top1, m.recipe.knn.k
        );
        self.knn.push((epoch as f64, acc.top1));
        let line = serde_json::json!({"epoch": epoch, "knn_top1": acc.top1, "knn_top5": acc.top5});
        let step = self.steps_done;
        let Some(reporter) = self.reporter() else {
            return Ok(());
        };
        reporter.write_line(Ok(line.to_string()));
        reporter.scalar("knn/top1", step, acc.top1);
        reporter.scalar("knn/top5", step, acc.top5);
        let knn_png = reporter.dir().join("knn.png");
        let plot = rho_train::plot::LinePlot {
            title: "kNN monitor".into(),
            x_label: "epoch".into(),
            y_label: "top-1 %".into(),
            smooth: false,
            series: vec![rho_train::plot::Series {
                name: "kNN top-1".into(),
                color: [30, 120, 30],
                points: self.knn.clone(),
            }],
        };
        let saved = plot.save_png(&knn_png);
        if let Some(r) = self.reporter() {
            r.keep_error(saved.map_err(Into::into));
        }
        Ok(())
    }
}
