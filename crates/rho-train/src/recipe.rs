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
    #[serde(deserialize_with = "method_section::deserialize")]
    pub method: rho_objectives::MethodConfig,
    pub data: DataSection,
    pub optim: OptimSection,
    /// Global batch, in videos (each carrying ρ clips).
    pub batch: usize,
    pub epochs: f64,
    pub output: PathBuf,
    #[serde(default)]
    pub seed: u64,
    /// The dtype convolutions and linear layers compute in: "f32", "bf16" or "f16" (mixed
    /// precision; master weights, BatchNorm, losses and the optimiser stay f32). f16 trains
    /// with a dynamic loss scale (`[optim]`'s `loss_scale*` keys).
    #[serde(default)]
    pub precision: rho_model::Precision,
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

/// `[method]`: `kind` picks the paper's preset (`MethodConfig::preset`, docs/method.md §1.2
/// and §2), and every other key changes one of its fields (the projection and predictor sizes,
/// temperature, momentum, queue, Sinkhorn, head initialisation, shuffle-BN, ...: any field of
/// `rho_objectives::MethodConfig`). A recipe written out (run cards, checkpoints) holds every
/// field, resolved.
mod method_section {
    use rho_objectives::MethodConfig;
    use serde::de::Error;
    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<MethodConfig, D::Error> {
        let given = toml::Table::deserialize(d)?;
        let name = given
            .get("kind")
            .ok_or_else(|| D::Error::missing_field("kind"))?
            .as_str()
            .ok_or_else(|| D::Error::custom("method.kind must be a string such as \"byol\""))?;
        let (kind, objective) =
            rho_objectives::registry::resolve(name).map_err(D::Error::custom)?;
        let preset = MethodConfig::preset(kind).with_objective(objective);
        let mut merged = toml::Table::try_from(preset).map_err(D::Error::custom)?;
        for (key, value) in given {
            if key == "kind" {
                continue;
            }
            if !merged.contains_key(&key) && key != "objective" {
                let known: Vec<&str> = merged.keys().map(String::as_str).collect();
                return Err(D::Error::custom(format!(
                    "unknown key `{key}` in [method]; expected one of: {}",
                    known.join(", ")
                )));
            }
            merged.insert(key, value);
        }
        toml::Value::Table(merged)
            .try_into()
            .map_err(D::Error::custom)
    }
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
    /// Changes to the "aug+" augmentation (docs/method.md §3.2); unset fields keep the paper's values.
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
    /// ρBYOL's predictor learns at this multiple of the learning rate (its BN and its other
    /// parameters alike; docs/method.md, "At the demo's scale"). 1 = the paper's single rate.
    #[serde(default = "default_unit")]
    pub predictor_lr_multiplier: f64,
    pub warmup_epochs: f64,
    /// Warm-up start, also scaled linearly.
    pub warmup_start_lr: f64,
    /// Accumulate gradients over this many micro-batches (BN then sees micro-batches).
    #[serde(default = "default_one")]
    pub accumulation: usize,
    /// f16 only: the initial loss scale (PyTorch's GradScaler default 2¹⁶) and the good steps
    /// after which it doubles; it halves on every overflow.
    #[serde(default = "default_loss_scale")]
    pub loss_scale: f64,
    #[serde(default = "default_growth_interval")]
    pub loss_scale_growth_interval: usize,
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
fn default_unit() -> f64 {
    1.0
}
fn default_one() -> usize {
    1
}
fn default_loss_scale() -> f64 {
    65536.0
}
fn default_growth_interval() -> usize {
    2000
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
        if d.rho == 0 || d.frames == 0 || d.stride == 0 || d.crop == 0 || d.short_side == 0 {
            return Err("data.rho, frames, stride, crop and short_side must be at least 1".into());
        }
        if d.workers == 0 {
            return Err("data.workers must be at least 1".into());
        }
        d.augment
            .apply(d.crop)
            .validate()
            .map_err(|e| format!("data.augment.{e}"))?;
        let o = &self.optim;
        if !(o.loss_scale.is_finite() && o.loss_scale > 0.0) || o.loss_scale_growth_interval == 0 {
            return Err(format!(
                "optim.loss_scale must be a positive number and optim.loss_scale_growth_interval at least 1 (got {} and {})",
                o.loss_scale, o.loss_scale_growth_interval
            ));
        }
        // Far beyond any real recipe, and small enough that no size computed from them overflows.
        for (name, v, max) in [
            ("batch", self.batch, 1 << 20),
            ("data.rho", d.rho, 64),
            ("data.frames", d.frames, 4096),
            ("data.stride", d.stride, 4096),
            ("data.crop", d.crop, 8192),
            ("data.short_side", d.short_side as usize, 16384),
            ("data.workers", d.workers, 4096),
            ("optim.accumulation", self.optim.accumulation, 1 << 20),
        ] {
            if v > max {
                return Err(format!("{name} = {v} is larger than rho supports ({max})"));
            }
        }
        if self.batch == 0 || !(self.epochs > 0.0) {
            return Err("batch and epochs must be positive".into());
        }
        let o = &self.optim;
        if !(o.base_lr > 0.0) || o.reference_batch == 0 {
            return Err("optim.base_lr and reference_batch must be positive".into());
        }
        let m = o.predictor_lr_multiplier;
        if !(m.is_finite() && m > 0.0) {
            return Err(format!(
                "optim.predictor_lr_multiplier must be a finite number > 0 (got {m}); 1 keeps the predictor at the common rate"
            ));
        }
        if m != 1.0 && self.method.kind != rho_objectives::MethodKind::Byol {
            return Err(format!(
                "optim.predictor_lr_multiplier = {m} needs a predictor, which only method.kind = \"byol\" has; remove the key"
            ));
        }
        for (name, v) in [
            ("optim.weight_decay", o.weight_decay),
            ("optim.bn_weight_decay", o.bn_weight_decay),
            ("optim.momentum", o.momentum),
            ("optim.warmup_start_lr", o.warmup_start_lr),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("{name} must be a finite number ≥ 0 (got {v})"));
            }
        }
        if o.warmup_epochs < 0.0 || o.warmup_epochs >= self.epochs {
            return Err(format!(
                "optim.warmup_epochs {} must be in [0, epochs = {})",
                o.warmup_epochs, self.epochs
            ));
        }
        self.micro_batch(1, 1)?;
        if self.method.kind == rho_objectives::MethodKind::Moco {
            let q = self.method.queue_len;
            let keys = self.batch * d.rho.max(2);
            if !q.is_multiple_of(keys) && !keys.is_multiple_of(q) {
                return Err(format!("method.queue_len {q} is not a multiple of the keys per step ({keys} = batch × clips)"));
            }
        }
        Ok(())
    }

    /// Videos per device and micro-batch on `world` devices. BatchNorm needs at least 2, unless
    /// its statistics are shared over a group of devices (`sync_bn_group > 1`).
    pub fn micro_batch(&self, world: usize, sync_bn_group: usize) -> Result<usize, String> {
        let (b, a) = (self.batch, self.optim.accumulation);
        if a == 0 {
            return Err("optim.accumulation must be at least 1".into());
        }
        if !b.is_multiple_of(world * a) {
            return Err(format!(
                "batch {b} does not split into {world} devices × optim.accumulation {a}; make it a multiple of {}",
                world * a
            ));
        }
        let micro = b / (world * a);
        if micro < 2 && sync_bn_group <= 1 {
            return Err(format!(
                "a batch of {b} over {world} device(s) and optim.accumulation {a} leaves {micro} video per device and micro-batch; BatchNorm needs 2, so use micro-batches of at least 2 videos (raise batch, lower optim.accumulation, or on several devices set model.sync_bn = \"all\")"
            ));
        }
        Ok(micro)
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

    /// The objective's configuration.
    pub fn method_config(&self) -> rho_objectives::MethodConfig {
        self.method.clone()
    }
}

/// A recipe file's text.
pub(crate) fn read_file(path: &Path) -> Result<String, RecipeError> {
    if let Some(kind) = rho_data::not_a_regular_file(path) {
        return Err(RecipeError::Read {
            path: path.to_path_buf(),
            reason: format!("it is {kind}, not a recipe file"),
        });
    }
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
    let parse = |overrides: &[String]| -> Result<T, String> {
        let table = apply_overrides(text, overrides)?;
        let value: T = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        validate(&value)?;
        Ok(value)
    };
    parse(overrides).map_err(|reason| {
        // When the file alone is fine, name the first `--set` that breaks it.
        let culprit = (parse(&[]).is_ok())
            .then(|| (1..=overrides.len()).find(|&n| parse(&overrides[..n]).is_err()))
            .flatten()
            .map(|n| &overrides[n - 1]);
        RecipeError::Invalid {
            source_name: match culprit {
                Some(o) => format!("{source_name} with --set {o}"),
                None => source_name.to_string(),
            },
            reason,
        }
    })
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
