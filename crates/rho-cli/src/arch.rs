//! Building a backbone from `--arch` and optional weights, shared by every command.

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use rho_model::weights::{
    head_classes, load_state_dict, LoadOptions, Naming, NonFinite, StateDict,
};
use rho_model::{ResNet3d, ResNet3dConfig};

/// The weight flags of a command (`--weights`, `--naming`, `--allow-partial`, a class count).
pub struct WeightsArgs<'a> {
    pub path: Option<&'a Path>,
    pub naming: Option<Naming>,
    pub allow_partial: bool,
    /// Head size when there is no file to take it from.
    pub num_classes: Option<usize>,
    /// Whether NaN or infinite weights are read (with a warning) or refused.
    pub non_finite: NonFinite,
}

/// The policy for `--allow-non-finite`.
pub fn non_finite(allow: bool) -> NonFinite {
    if allow {
        NonFinite::Allow
    } else {
        NonFinite::Refuse
    }
}

/// Builds `arch` and loads `source` into it. With a file, the head is created when the file has
/// one (its class count is read from the file).
pub fn build<B: Backend>(
    arch: &str,
    source: WeightsArgs,
    device: &B::Device,
) -> Result<ResNet3d<B>> {
    let cfg = ResNet3dConfig::preset(arch)?;
    let Some(path) = source.path else {
        return Ok(cfg.with_num_classes(source.num_classes).try_init(device)?);
    };
    let sd = StateDict::read_with(path, source.non_finite)?;
    if !sd.non_finite.is_empty() {
        eprintln!(
            "warning: {} holds NaN or infinite values in {} tensor(s): {}",
            path.display(),
            sd.non_finite.len(),
            sd.non_finite.join(", ")
        );
    }
    let naming = source
        .naming
        .or_else(|| rho_model::weights::detect_naming(&sd));
    let classes = source
        .num_classes
        .or_else(|| naming.and_then(|n| head_classes(&sd, n, cfg.stages.len())));
    let model = cfg.with_num_classes(classes).try_init(device)?;
    let opts = LoadOptions {
        naming,
        allow_partial: source.allow_partial,
        non_finite: source.non_finite,
    };
    let (model, report) = load_state_dict(model, &sd, opts)
        .with_context(|| format!("loading {} into {arch}", path.display()))?;
    eprintln!(
        "loaded {} tensors from {} ({} naming){}{}",
        report.applied,
        path.display(),
        report.naming,
        if report.skipped_head.is_empty() {
            String::new()
        } else {
            format!(
                "; head left at its initial values: {}",
                report.skipped_head.join(", ")
            )
        },
        if report
            .ignored
            .iter()
            .any(|k| !k.ends_with("num_batches_tracked"))
        {
            let n = report
                .ignored
                .iter()
                .filter(|k| !k.ends_with("num_batches_tracked"))
                .count();
            format!("; {n} unused keys (momentum encoder, SSL head) ignored")
        } else {
            String::new()
        }
    );
    Ok(model)
}
