//! The CLI's hooks into the trainer: the [`Reporter`] after every step, and the kNN monitor at
//! the end of every N epochs.

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use rho_objectives::SslNetwork;
use rho_train::{Hooks, StepLog, TrainError};

use super::reporter::Reporter;

/// The kNN monitor of a run: every `every` epochs on `recipe`'s lists.
pub struct KnnMonitor {
    pub every: u64,
    pub recipe: rho_train::eval::EvalRecipe,
}

pub struct CliHooks<B: Backend> {
    pub reporter: Reporter,
    pub monitor: Option<KnnMonitor>,
    pub device: B::Device,
    /// (epoch, kNN top-1) so far, for knn.png.
    knn: Vec<(f64, f64)>,
}

impl<B: Backend> CliHooks<B> {
    pub fn new(reporter: Reporter, monitor: Option<KnnMonitor>, device: B::Device) -> Self {
        Self {
            reporter,
            monitor,
            device,
            knn: Vec::new(),
        }
    }
}

impl<B: Backend> Hooks<Autodiff<B>> for CliHooks<B> {
    fn on_step(&mut self, log: &StepLog) {
        self.reporter.step(log);
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
        self.reporter.write_line(Ok(line.to_string()));
        let plot = rho_train::plot::LinePlot {
            title: "kNN top-1 (%)".into(),
            x_label: "epoch".into(),
            series: vec![rho_train::plot::Series {
                name: "kNN top-1".into(),
                color: [30, 120, 30],
                points: self.knn.clone(),
            }],
        };
        let saved = plot.save_png(&self.reporter.dir().join("knn.png"));
        self.reporter.keep_error(saved.map_err(Into::into));
        Ok(())
    }
}
