//! Checks that refuse a run before any compute is spent: files that do not exist, clips longer
//! than the videos, a step that cannot fit in memory.

use rho_data::VideoIndex;

use super::TrainError;
use crate::recipe::Recipe;

/// Files the index lists but that do not exist, and clips longer than the videos.
pub fn preflight(recipe: &Recipe, index: &VideoIndex) -> Result<(), TrainError> {
    let missing: Vec<String> = index
        .entries
        .iter()
        .map(|e| e.source.path())
        .filter(|p| !p.exists())
        .map(|p| match std::fs::symlink_metadata(p) {
            Ok(_) => format!("{} (a broken symlink or a symlink loop)", p.display()),
            Err(_) => p.display().to_string(),
        })
        .collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(10).map(String::as_str).collect();
        return Err(TrainError::Config(format!(
            "{} of {} videos in {} do not exist (first: {}); fix data.index/data.prefix, or write a clean list with `rho data check --quarantine`",
            missing.len(),
            index.len(),
            recipe.data.index.display(),
            shown.join(", ")
        )));
    }
    not_regular_files(recipe, index)?;
    clip_fits_the_videos(recipe, index)?;
    Ok(())
}

/// Video files must be regular files: opening a FIFO or a device would block the decoder.
fn not_regular_files(recipe: &Recipe, index: &VideoIndex) -> Result<(), TrainError> {
    let odd: Vec<String> = index
        .entries
        .iter()
        .filter_map(|e| match &e.source {
            rho_data::VideoSource::File(p) => Some(p),
            _ => None,
        })
        .filter_map(|p| {
            rho_data::not_a_regular_file(p).map(|kind| format!("{} ({kind})", p.display()))
        })
        .collect();
    if odd.is_empty() {
        return Ok(());
    }
    Err(TrainError::Config(format!(
        "{} of the videos in {} are not regular files (first: {}); list video files only (`rho data check --quarantine` writes a clean list)",
        odd.len(),
        recipe.data.index.display(),
        odd.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
    )))
}

/// How long the pre-flight waits for one video's probe (a header read, normally milliseconds).
#[cfg(feature = "video")]
const PROBE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Probes a few videos (container files and frame folders): if none is as long as one clip,
/// every clip would be padding.
fn clip_fits_the_videos(recipe: &Recipe, index: &VideoIndex) -> Result<(), TrainError> {
    let loader = super::data::loader_config(recipe);
    let sampler = loader.sampler;
    let mut longest: Option<(f64, f64)> = None; // (frames, span) of the longest probed
    for e in index.entries.iter().take(16) {
        let probed = match &e.source {
            rho_data::VideoSource::FrameDir { total_frames, .. } => {
                Some((*total_frames, loader.frame_folder_fps))
            }
            #[cfg(feature = "video")]
            rho_data::VideoSource::File(p) => {
                let path = p.clone();
                rho_data::with_deadline(p, PROBE_DEADLINE, "probing", move || {
                    rho_data::decode::VideoDecoder::open(&path)
                        .map(|d| (d.probe().num_frames, d.probe().fps))
                })
                .ok()
            }
            #[cfg(not(feature = "video"))]
            rho_data::VideoSource::File(_) => None,
        };
        if let Some((frames, fps)) = probed {
            let (frames, span) = (frames as f64, sampler.span(fps) as f64);
            if longest.is_none_or(|(f, s)| frames / span > f / s) {
                longest = Some((frames, span));
            }
        }
    }
    match longest {
        Some((frames, span)) if frames < span => Err(TrainError::Config(format!(
            "a clip of {}×{} spans {:.2} s, but the longest of the first videos has only {:.0} of the {:.0} frames it needs; shorten data.frames/data.stride",
            recipe.data.frames,
            recipe.data.stride,
            sampler.span_seconds(),
            frames,
            span
        ))),
        _ => Ok(()),
    }
}

/// Refuses a step whose memory estimate on one of `world` devices exceeds `limit` bytes,
/// naming the accumulation that would fit.
pub fn memory_fits(recipe: &Recipe, world: usize, limit: f64) -> Result<(), TrainError> {
    let est = crate::memory::estimate_per_device(recipe, world)?;
    if est.total() <= limit {
        return Ok(());
    }
    let (a, b) = (recipe.optim.accumulation, recipe.batch / world.max(1));
    let fix = (a * 2..=b)
        .find(|k| b.is_multiple_of(*k) && b / k >= 2)
        .unwrap_or(b / 2);
    Err(TrainError::OutOfMemory(format!(
        "a step of {} needs about {} ({} activations for {} videos × {} clips of {}×{}², {} parameters and optimiser state), more than the {} available; raise optim.accumulation (now {a}, e.g. --set optim.accumulation={fix}), or lower batch, data.crop or data.frames",
        recipe.name,
        crate::memory::gib(est.total()),
        crate::memory::gib(est.activation_bytes),
        b / a.max(1),
        recipe.data.rho.max(2),
        recipe.data.frames,
        recipe.data.crop,
        crate::memory::gib(est.parameter_bytes),
        crate::memory::gib(limit),
    )))
}

/// What differs between the recipe a checkpoint was written with (`saved`, its TOML) and the
/// recipe resuming it, as `key: old → new` lines. A different network or method (`model.arch`,
/// `method.kind`/`objective`, or a head or queue size) cannot resume at all; any other change
/// (batch, data, schedule, method constants) only with `allow_change`. The name and the output folder may
/// differ (a moved run).
pub fn resume_changes(
    saved: &str,
    recipe: &Recipe,
    allow_change: bool,
) -> Result<Vec<String>, TrainError> {
    if saved.is_empty() {
        return Ok(Vec::new()); // written before checkpoints held their recipe
    }
    let saved: toml::Table = saved
        .parse()
        .map_err(|e| TrainError::Config(format!("the checkpoint's recipe does not parse: {e}")))?;
    let now = toml::Table::try_from(recipe)
        .map_err(|e| TrainError::Config(format!("the recipe: {e}")))?;
    let (old, new) = (flatten(&saved), flatten(&now));
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let absent = String::from("(unset)");
    let changes: Vec<(String, String, String)> = keys
        .into_iter()
        .filter(|k| !matches!(k.as_str(), "name" | "output"))
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            let v = |m: &std::collections::BTreeMap<String, String>| {
                m.get(k).unwrap_or(&absent).clone()
            };
            (k.clone(), v(&old), v(&new))
        })
        .collect();
    // What decides the networks' shapes: a checkpoint of another shape cannot be loaded.
    let hard = [
        "model.arch",
        "method.kind",
        "method.objective",
        "method.proj_layers",
        "method.proj_hidden",
        "method.proj_dim",
        "method.proj_bn",
        "method.proj_out_bn",
        "method.predictor_hidden",
        "method.prototypes",
        "method.queue_len",
    ];
    if let Some((k, a, b)) = changes.iter().find(|(k, ..)| hard.contains(&k.as_str())) {
        return Err(TrainError::Config(format!(
            "the checkpoint was written with {k} = {a}, this recipe has {k} = {b}: a network cannot resume as another; start a new run (another output folder) or resume with the checkpoint's recipe"
        )));
    }
    let lines: Vec<String> = changes
        .iter()
        .map(|(k, a, b)| format!("{k}: {a} → {b}"))
        .collect();
    if !lines.is_empty() && !allow_change {
        return Err(TrainError::Config(format!(
            "the recipe differs from the one the checkpoint was written with ({}); resume with the same recipe, or pass --allow-recipe-change to continue with these changes (the run card records them)",
            lines.join("; ")
        )));
    }
    Ok(lines)
}

/// `a.b.c = value` for every leaf of a TOML table.
fn flatten(t: &toml::Table) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    for (k, v) in t {
        match v {
            toml::Value::Table(inner) => {
                for (ik, iv) in flatten(inner) {
                    out.insert(format!("{k}.{ik}"), iv);
                }
            }
            other => {
                out.insert(k.clone(), other.to_string());
            }
        }
    }
    out
}
