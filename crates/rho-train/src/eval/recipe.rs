//! `EvalRecipe`: one downstream protocol as TOML (docs/method.md §5): the linear probe on
//! Kinetics and fine-tuning on UCF101/HMDB51, with the data, views, optimiser and, for the
//! paper's own settings, the paper's number to compare with.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::DatasetSpec;
use crate::recipe::{default_momentum, default_true, parse_validated, read_file, RecipeError};
use crate::schedule::{scale_lr, CosineSchedule};

/// Which protocol a recipe describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Frozen backbone, linear classifier on pooled features (docs/method.md §5.1).
    Linear,
    /// The whole network with a new head (docs/method.md §5.2).
    Finetune,
}

/// How BatchNorm behaves while a linear probe trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BnMode {
    /// The released code's: the backbone runs in training mode, so BN normalises with batch
    /// statistics and its running statistics are re-estimated on the probe's data (weights stay
    /// frozen). Every epoch runs the backbone.
    #[default]
    Code,
    /// Truly frozen: BN uses the pre-trained running statistics; features are computed once and
    /// can be cached.
    Frozen,
}

/// The learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrPolicy {
    /// Linear warm-up, then half-cosine to 0 (docs/method.md §4.2).
    #[default]
    Cosine,
    /// The rate times `gamma` at each milestone epoch (the paper's fine-tuning schedule).
    Steps,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRecipe {
    pub name: String,
    pub protocol: Protocol,
    /// Network shape; needed for weights without a recipe (safetensors, PyTorch files).
    pub model: Option<EvalModel>,
    pub train: DatasetSpec,
    pub test: DatasetSpec,
    pub data: EvalData,
    pub optim: EvalOptim,
    /// Global batch in clips.
    pub batch: usize,
    pub epochs: f64,
    pub output: PathBuf,
    #[serde(default)]
    pub seed: u64,
    /// Linear probe only.
    #[serde(default)]
    pub bn: BnMode,
    /// Dropout before the new linear layer (0 for the linear probe, 0.8 for fine-tuning).
    #[serde(default)]
    pub dropout: f64,
    #[serde(default)]
    pub knn: KnnSection,
    /// The dtype the backbone's convolutions compute in ("f32", "bf16", "f16"), as in
    /// pre-training; the probe's Linear layer and its loss stay f32.
    #[serde(default)]
    pub precision: rho_model::Precision,
    /// The paper's number for this exact setting, when there is one.
    pub paper: Option<PaperReference>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalModel {
    pub arch: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalData {
    pub frames: usize,
    pub stride: usize,
    /// Training crop side (224).
    pub crop: usize,
    /// Short side of decoded training frames (256; the crop is taken from a random-resized area
    /// equal to short-side jitter [256, 320] + 224 crop).
    #[serde(default = "default_short_side")]
    pub short_side: u32,
    /// Test views: temporal clips × spatial crops (10 × 3) of `test_crop` pixels (256).
    #[serde(default = "ten")]
    pub test_clips: usize,
    #[serde(default = "three")]
    pub test_crops: usize,
    pub test_crop: Option<usize>,
    /// Colour augmentation while training (fine-tuning configs: grayscale 0.2 + jitter 0.4).
    #[serde(default)]
    pub color: bool,
    /// Frozen-BN probe: augmented clips cached per training video.
    #[serde(default = "one")]
    pub train_views: usize,
    #[serde(default = "default_workers")]
    pub workers: usize,
}

fn default_short_side() -> u32 {
    256
}
fn ten() -> usize {
    10
}
fn three() -> usize {
    3
}
fn one() -> usize {
    1
}
fn default_workers() -> usize {
    4
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalOptim {
    /// Rate at `reference_batch`, scaled linearly to `batch`.
    pub base_lr: f64,
    pub reference_batch: usize,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default = "default_true")]
    pub nesterov: bool,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default)]
    pub warmup_epochs: f64,
    #[serde(default)]
    pub warmup_start_lr: f64,
    #[serde(default)]
    pub policy: LrPolicy,
    /// `steps` policy: epochs where the rate is multiplied by `gamma`.
    #[serde(default)]
    pub milestones: Vec<f64>,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
}

fn default_gamma() -> f64 {
    0.1
}

/// Cosine kNN (docs/method.md §2.8): k neighbours, votes weighted by
/// exp(similarity / temperature).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnnSection {
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default = "default_t")]
    pub temperature: f64,
}

impl Default for KnnSection {
    fn default() -> Self {
        Self {
            k: default_k(),
            temperature: default_t(),
        }
    }
}

fn default_k() -> usize {
    200
}
fn default_t() -> f64 {
    0.07
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperReference {
    pub top1: f64,
    /// Where the number comes from (table, model).
    pub source: String,
}

impl EvalRecipe {
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, RecipeError> {
        Self::parse(&read_file(path)?, &path.display().to_string(), overrides)
    }

    pub fn parse(text: &str, source_name: &str, overrides: &[String]) -> Result<Self, RecipeError> {
        parse_validated(text, source_name, overrides, Self::validate)
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(m) = &self.model {
            rho_model::ResNet3dConfig::preset(&m.arch).map_err(|e| e.to_string())?;
        }
        let d = &self.data;
        if d.frames == 0 || d.stride == 0 || d.crop == 0 || d.test_clips == 0 || d.test_crops == 0 {
            return Err(
                "data.frames, stride, crop, test_clips and test_crops must be at least 1".into(),
            );
        }
        if d.train_views == 0 || d.workers == 0 {
            return Err("data.train_views and data.workers must be at least 1".into());
        }
        if self.batch < 2 || !(self.epochs > 0.0) {
            return Err("batch must be at least 2 (BatchNorm) and epochs positive".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        let o = &self.optim;
        if !(o.base_lr > 0.0) || o.reference_batch == 0 {
            return Err("optim.base_lr and reference_batch must be positive".into());
        }
        if o.warmup_epochs < 0.0 || o.warmup_epochs >= self.epochs {
            return Err(format!(
                "optim.warmup_epochs {} must be in [0, epochs = {})",
                o.warmup_epochs, self.epochs
            ));
        }
        if o.policy == LrPolicy::Steps && o.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err("optim.milestones must increase".into());
        }
        if self.knn.k == 0 || !(self.knn.temperature > 0.0) {
            return Err("knn.k and knn.temperature must be positive".into());
        }
        Ok(())
    }

    /// The learning rate at fractional epoch `e`, after the linear scaling rule.
    pub fn lr(&self, e: f64) -> f64 {
        let o = &self.optim;
        let base = scale_lr(o.base_lr, self.batch, o.reference_batch);
        let start = scale_lr(o.warmup_start_lr, self.batch, o.reference_batch);
        match o.policy {
            LrPolicy::Cosine => CosineSchedule {
                base_lr: base,
                warmup_start: start,
                warmup_epochs: o.warmup_epochs,
                epochs: self.epochs,
            }
            .lr(e),
            LrPolicy::Steps => {
                let passed = o.milestones.iter().filter(|m| e >= **m).count();
                let lr = base * o.gamma.powi(passed as i32);
                if e < o.warmup_epochs {
                    start + e * (lr - start) / o.warmup_epochs
                } else {
                    lr
                }
            }
        }
    }

    /// The test-view side (the training crop unless set).
    pub fn test_crop(&self) -> usize {
        self.data.test_crop.unwrap_or(self.data.crop)
    }

    /// Words for reports: "10 clips × 3 crops of 256²".
    pub fn views_text(&self) -> String {
        format!(
            "{} clips × {} crops of {}²",
            self.data.test_clips,
            self.data.test_crops,
            self.test_crop()
        )
    }
}
