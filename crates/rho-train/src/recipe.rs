//! `Recipe`: one pre-training run as TOML (the paper's settings live in `configs/`). Unknown keys
//! are errors that list the keys the section accepts; `--set key=value` overrides any field
//! before validation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::schedule::{scale_lr, CosineSchedule};

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot read recipe {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("recipe {source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    pub name: String,
    pub model: ModelSection,
    pub method: MethodSection,
    pub data: DataSection,
    pub optim: OptimSection,
    /// Global batch, in videos (each carrying ρ clips).
    pub batch: usize,
    pub epochs: f64,
    pub output: PathBuf,
    #[serde(default)]
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub arch: String,
    /// BatchNorm across devices: "off" (per device), "all", or a group size such as 8 (the
    /// paper's "SyncBN 8"; PySlowFast's BN.NUM_SYNC_DEVICES). Only matters with several devices.
    #[serde(default)]
    pub sync_bn: SyncBn,
}

/// How BatchNorm statistics are shared between data-parallel devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncBn {
    /// Each device normalises with its own shard's statistics.
    #[default]
    Off,
    /// One group over every device.
    All,
    /// Groups of this many consecutive ranks.
    Group(usize),
}

impl SyncBn {
    /// The sync-group size on `world` devices (1: per-device BatchNorm). A group larger than the
    /// world is the whole world (a 64-GPU recipe's "SyncBN 8" on 2 devices syncs both).
    pub fn group_size(self, world: usize) -> Result<usize, String> {
        let g = match self {
            SyncBn::Off => 1,
            SyncBn::All => world,
            SyncBn::Group(g) => g.min(world),
        };
        if g == 0 || !world.is_multiple_of(g) {
            return Err(format!(
                "model.sync_bn = {g} does not divide the {world} devices into equal groups; use a divisor of {world}, \"all\" or \"off\""
            ));
        }
        Ok(g)
    }
}

impl Serialize for SyncBn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SyncBn::Off => s.serialize_str("off"),
            SyncBn::All => s.serialize_str("all"),
            SyncBn::Group(g) => s.serialize_u64(*g as u64),
        }
    }
}

impl<'de> Deserialize<'de> for SyncBn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Name(String),
            Group(u64),
        }
        match Repr::deserialize(d)? {
            Repr::Name(n) if n == "off" => Ok(SyncBn::Off),
            Repr::Name(n) if n == "all" => Ok(SyncBn::All),
            Repr::Group(0) | Repr::Group(1) => Ok(SyncBn::Off),
            Repr::Group(g) => Ok(SyncBn::Group(g as usize)),
            Repr::Name(n) => Err(serde::de::Error::custom(format!(
                "sync_bn = \"{n}\": expected \"off\", \"all\" or a group size such as 8"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MethodSection {
    /// moco | byol | simclr | swav
    pub kind: rho_objectives::MethodKind,
    #[serde(default)]
    pub aggregation: rho_objectives::Aggregation,
    pub temperature: Option<f64>,
    pub momentum_base: Option<f64>,
    pub queue_len: Option<usize>,
    pub multi_positive: Option<bool>,
    pub all_pairs: Option<bool>,
    pub proj_bn: Option<bool>,
    pub prototypes: Option<usize>,
    /// SwAV: Sinkhorn-Knopp's ε and iterations, and the epochs before the prototypes learn.
    pub sinkhorn_epsilon: Option<f64>,
    pub sinkhorn_iterations: Option<usize>,
    pub freeze_prototypes_epochs: Option<f64>,
    /// MLP sizes (spec §1.2: projection 2048→4096→256 or →128, predictor 256→4096→256); small
    /// backbones train better with narrower heads.
    pub proj_layers: Option<usize>,
    pub proj_hidden: Option<usize>,
    pub proj_dim: Option<usize>,
    pub predictor_hidden: Option<usize>,
    /// "c2_xavier" (PySlowFast, the default) or "pytorch" (nn.Linear's init; docs/methods.md).
    pub head_init: Option<rho_objectives::HeadInit>,
    /// MoCo: leave a query's own video out of its negatives (default true).
    pub exclude_own_video: Option<bool>,
    /// MoCo: shuffle-BN in the key encoder, and the sub-batches on one device.
    pub shuffle_bn: Option<bool>,
    pub shuffle_bn_splits: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    pub index: PathBuf,
    #[serde(default)]
    pub format: crate::dataset::IndexFormat,
    pub prefix: Option<PathBuf>,
    /// Clips per video (ρ); 1 means two crops of one clip.
    pub rho: usize,
    pub frames: usize,
    pub stride: usize,
    /// Maximum seconds between clip starts (paper Table 4); none = the whole video.
    pub max_timespan_s: Option<f64>,
    #[serde(default = "default_crop")]
    pub crop: usize,
    #[serde(default = "default_short_side")]
    pub short_side: u32,
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Changes to the "aug+" augmentation (spec §3.2); unset fields keep the paper's values.
    #[serde(default)]
    pub augment: AugmentOverrides,
}

/// Optional changes to the pre-training augmentation (e.g. milder crops and no blur for small
/// frames, where the paper's σ up to 2 px erases textures).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentOverrides {
    /// Random-resized-crop area range (paper: [0.2, 0.766]).
    pub area: Option<(f64, f64)>,
    pub flip_p: Option<f64>,
    /// Brightness, contrast, saturation, hue (paper: 0.6, 0.6, 0.6, 0.15).
    pub jitter: Option<[f64; 4]>,
    pub jitter_p: Option<f64>,
    pub grayscale_p: Option<f64>,
    pub blur_p: Option<f64>,
    pub blur_sigma: Option<(f64, f64)>,
}

impl AugmentOverrides {
    /// The paper's augmentation at crop side `size`, with these changes.
    pub fn apply(&self, size: usize) -> rho_data::augment::AugmentConfig {
        let mut a = rho_data::augment::AugmentConfig {
            size,
            ..Default::default()
        };
        if let Some(v) = self.area {
            a.area = v;
        }
        if let Some(v) = self.flip_p {
            a.flip_p = v;
        }
        if let Some(v) = self.jitter {
            a.jitter = v;
        }
        if let Some(v) = self.jitter_p {
            a.jitter_p = v;
        }
        if let Some(v) = self.grayscale_p {
            a.grayscale_p = v;
        }
        if let Some(v) = self.blur_p {
            a.blur_p = v;
        }
        if let Some(v) = self.blur_sigma {
            a.blur_sigma = v;
        }
        a
    }
}

fn default_crop() -> usize {
    224
}
fn default_short_side() -> u32 {
    256
}
fn default_workers() -> usize {
    4
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Lars,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    pub optimizer: OptimizerKind,
    /// Learning rate at `reference_batch` videos; scaled linearly to `batch`.
    pub base_lr: f64,
    pub reference_batch: usize,
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    #[serde(default = "default_true")]
    pub nesterov: bool,
    pub weight_decay: f64,
    #[serde(default)]
    pub bn_weight_decay: f64,
    #[serde(default = "default_trust")]
    pub lars_trust: f64,
    pub warmup_epochs: f64,
    /// Warm-up start, also scaled linearly.
    pub warmup_start_lr: f64,
    /// Accumulate gradients over this many micro-batches (BN then sees micro-batches).
    #[serde(default = "default_one")]
    pub accumulation: usize,
}

pub(crate) fn default_momentum() -> f64 {
    0.9
}
pub(crate) fn default_true() -> bool {
    true
}
fn default_trust() -> f64 {
    0.001
}
fn default_one() -> usize {
    1
}

impl Recipe {
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, RecipeError> {
        Self::parse(&read_file(path)?, &path.display().to_string(), overrides)
    }

    /// Parses `text`, applies `key.path=value` overrides (TOML values; bare words are strings),
    /// and validates.
    pub fn parse(text: &str, source_name: &str, overrides: &[String]) -> Result<Self, RecipeError> {
        parse_validated(text, source_name, overrides, Self::validate)
    }

    pub fn validate(&self) -> Result<(), String> {
        rho_model::ResNet3dConfig::preset(&self.model.arch).map_err(|e| e.to_string())?;
        self.method_config()
            .validate()
            .map_err(|e| format!("[method]: {e}"))?;
        let d = &self.data;
        if d.rho == 0 || d.frames == 0 || d.stride == 0 || d.crop == 0 {
            return Err("data.rho, frames, stride and crop must be at least 1".into());
        }
        if self.batch == 0 || !(self.epochs > 0.0) {
            return Err("batch and epochs must be positive".into());
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
        if o.accumulation == 0
            || !self.batch.is_multiple_of(o.accumulation)
            || self.batch / o.accumulation < 2
        {
            return Err(format!(
                "batch {} must split by optim.accumulation {} into micro-batches of at least 2 videos (BatchNorm needs them)",
                self.batch, o.accumulation
            ));
        }
        if self.method.kind == rho_objectives::MethodKind::Moco {
            let q = self.method.queue_len.unwrap_or(65536);
            let keys = self.batch * d.rho.max(2);
            if !q.is_multiple_of(keys) && !keys.is_multiple_of(q) {
                return Err(format!("method.queue_len {q} is not a multiple of the keys per step ({keys} = batch × clips)"));
            }
        }
        Ok(())
    }

    /// The schedule after the linear scaling rule.
    pub fn schedule(&self) -> CosineSchedule {
        let o = &self.optim;
        CosineSchedule {
            base_lr: scale_lr(o.base_lr, self.batch, o.reference_batch),
            warmup_start: scale_lr(o.warmup_start_lr, self.batch, o.reference_batch),
            warmup_epochs: o.warmup_epochs,
            epochs: self.epochs,
        }
    }

    /// The pre-training data as a [`DatasetSpec`](crate::dataset::DatasetSpec).
    pub fn dataset(&self) -> crate::dataset::DatasetSpec {
        let mut spec = crate::dataset::DatasetSpec::new(&self.data.index, self.data.format);
        spec.prefix = self.data.prefix.clone();
        spec
    }

    /// The objective's configuration with this recipe's overrides.
    pub fn method_config(&self) -> rho_objectives::MethodConfig {
        let m = &self.method;
        let mut c = rho_objectives::MethodConfig::preset(m.kind).with_aggregation(m.aggregation);
        if let Some(v) = m.temperature {
            c.temperature = v;
        }
        if let Some(v) = m.momentum_base {
            c.momentum_base = v;
        }
        if let Some(v) = m.queue_len {
            c.queue_len = v;
        }
        if let Some(v) = m.multi_positive {
            c.multi_positive = v;
        }
        if let Some(v) = m.all_pairs {
            c.all_pairs = v;
        }
        if let Some(v) = m.proj_bn {
            c.proj_bn = v;
        }
        if let Some(v) = m.prototypes {
            c.prototypes = v;
        }
        if let Some(v) = m.sinkhorn_epsilon {
            c.sinkhorn_epsilon = v;
        }
        if let Some(v) = m.sinkhorn_iterations {
            c.sinkhorn_iterations = v;
        }
        if let Some(v) = m.freeze_prototypes_epochs {
            c.freeze_prototypes_epochs = v;
        }
        if let Some(v) = m.proj_layers {
            c.proj_layers = v;
        }
        if let Some(v) = m.proj_hidden {
            c.proj_hidden = v;
        }
        if let Some(v) = m.proj_dim {
            c.proj_dim = v;
        }
        if let Some(v) = m.predictor_hidden {
            c.predictor_hidden = v;
        }
        if let Some(v) = m.head_init {
            c.head_init = v;
        }
        if let Some(v) = m.exclude_own_video {
            c.exclude_own_video = v;
        }
        if let Some(v) = m.shuffle_bn {
            c.shuffle_bn = v;
        }
        if let Some(v) = m.shuffle_bn_splits {
            c.shuffle_bn_splits = v;
        }
        c
    }
}

/// A recipe file's text.
pub(crate) fn read_file(path: &Path) -> Result<String, RecipeError> {
    std::fs::read_to_string(path).map_err(|e| RecipeError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Parses TOML `text` into `T` after `--set` overrides, and runs `validate`; every error names
/// `source_name`.
pub(crate) fn parse_validated<T: serde::de::DeserializeOwned>(
    text: &str,
    source_name: &str,
    overrides: &[String],
    validate: impl Fn(&T) -> Result<(), String>,
) -> Result<T, RecipeError> {
    let bad = |reason: String| RecipeError::Invalid {
        source_name: source_name.to_string(),
        reason,
    };
    let table = apply_overrides(text, overrides).map_err(bad)?;
    let value: T = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.to_string()))?;
    validate(&value).map_err(bad)?;
    Ok(value)
}

/// Parses TOML `text` and applies `key.path=value` overrides (TOML values; bare words are
/// strings).
pub(crate) fn apply_overrides(text: &str, overrides: &[String]) -> Result<toml::Table, String> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    for o in overrides {
        let (key, value) = o
            .split_once('=')
            .ok_or_else(|| format!("--set `{o}` is not key=value"))?;
        let value: toml::Value = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        set_path(&mut table, key.trim(), value)?;
    }
    Ok(table)
}

fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| format!("--set needs a key, got `{key}`"))?;
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("--set {key}: `{p}` is not a section"))?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}
