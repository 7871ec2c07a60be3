//! What an evaluation reports: a JSON record, a markdown table that states the protocol (views,
//! crops, split, BN mode) with the paper's number beside ours when the recipe is the paper's,
//! and a confusion-matrix PNG.

use std::path::Path;

use serde::Serialize;

use super::metrics::Accuracy;
use super::EvalError;

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// linear, knn or finetune.
    pub protocol: String,
    pub recipe: String,
    pub weights: String,
    pub arch: String,
    /// Linear probe: code or frozen.
    pub bn_mode: Option<String>,
    /// Test views, e.g. "10 clips × 3 crops of 256²".
    pub views: String,
    pub train: String,
    pub test: String,
    pub train_videos: usize,
    pub test_videos: usize,
    pub classes: usize,
    pub top1: f64,
    pub top5: f64,
    pub mean_class: f64,
    pub paper_top1: Option<f64>,
    pub paper_source: Option<String>,
    /// Backbone passes over the training set (0 when cached features were used).
    pub train_backbone_passes: usize,
    pub feature_cache_hit: bool,
    pub seconds: f64,
    /// Mean loss per epoch (trained protocols).
    pub loss_per_epoch: Vec<f64>,
    pub confusion: Vec<Vec<usize>>,
}

impl EvalReport {
    pub fn set_accuracy(&mut self, a: &Accuracy) {
        self.top1 = a.top1;
        self.top5 = a.top5;
        self.mean_class = a.mean_class;
        self.confusion = a.confusion.clone();
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "| protocol | weights | top-1 | top-5 | mean class | paper top-1 |\n|---|---|---|---|---|---|\n| {} | {} | {:.1} | {:.1} | {:.1} | {} |\n\n",
            self.protocol,
            self.weights,
            self.top1,
            self.top5,
            self.mean_class,
            self.paper_top1
                .map(|p| format!("{p:.1}"))
                .unwrap_or_else(|| "—".into())
        );
        s += &format!(
            "Protocol: {} ({}), {} network; trained on {} ({} videos), tested on {} ({} videos, {} classes) with {}, softmax averaged over views{}.\n",
            self.protocol,
            self.recipe,
            self.arch,
            self.train,
            self.train_videos,
            self.test,
            self.test_videos,
            self.classes,
            self.views,
            self.bn_mode
                .as_ref()
                .map(|m| format!("; BatchNorm {m}"))
                .unwrap_or_default()
        );
        if let Some(src) = &self.paper_source {
            s += &format!("Paper: {src}.\n");
        }
        s
    }

    /// `results.json`, `results.md` and `confusion.png` in `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), EvalError> {
        let err = |e: std::io::Error| {
            EvalError::Config(format!("cannot write to {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let json = serde_json::to_string_pretty(self).unwrap_or_default();
        rho_model::weights::write_atomically(&dir.join("results.json"), json.as_bytes())
            .map_err(err)?;
        rho_model::weights::write_atomically(&dir.join("results.md"), self.markdown().as_bytes())
            .map_err(err)?;
        self.write_events(dir).map_err(err)?;
        let title = format!("{} {}: top-1 {:.1}%", self.protocol, self.arch, self.top1);
        let (w, h, px) = crate::plot::confusion_png(&self.confusion, &title).map_err(err)?;
        crate::plot::save_rgb_png(&dir.join("confusion.png"), w, h, &px).map_err(err)
    }
}

impl EvalReport {
    /// TensorBoard scalars of the evaluation (`eval/PROTOCOL/...`): the loss per epoch of a
    /// trained protocol, then top-1, top-5 and mean-class accuracy at the last epoch.
    fn write_events(&self, dir: &Path) -> std::io::Result<()> {
        let mut e = crate::tensorboard::EventWriter::create(dir, None)?;
        let tag = |name: &str| format!("eval/{}/{name}", self.protocol);
        for (epoch, loss) in self.loss_per_epoch.iter().enumerate() {
            e.scalar(&tag("loss"), epoch as i64 + 1, *loss)?;
        }
        let last = self.loss_per_epoch.len() as i64;
        e.scalar(&tag("top1"), last, self.top1)?;
        e.scalar(&tag("top5"), last, self.top5)?;
        e.scalar(&tag("mean_class"), last, self.mean_class)?;
        e.flush()
    }
}
