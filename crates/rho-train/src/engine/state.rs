//! A trainer's state in and out of checkpoints: the online network, the optimiser groups, and
//! the method's own state as the method names it.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use rho_data::LoaderPosition;
use rho_objectives::{module_from_bytes, module_to_bytes, Objective, SslNetwork};

use super::TrainError;
use crate::checkpoint::{
    checkpoint_path, list_checkpoints, Checkpoint, CheckpointError, CheckpointMeta, ONLINE,
    OPTIM_BN, OPTIM_REST,
};
use crate::optim::GroupedOptimizer;
use crate::recipe::Recipe;

/// What a trainer holds between steps.
pub struct TrainState<'a, B: AutodiffBackend> {
    pub net: &'a SslNetwork<B>,
    pub method: &'a dyn Objective<B>,
    pub opt: &'a GroupedOptimizer<SslNetwork<B>, B>,
    /// f16 runs: the loss scale to continue with.
    pub loss_scale: Option<crate::loss_scale::LossScaler>,
}

/// Writes `state` after `step` steps (the loader to continue at `position`) into the recipe's
/// output folder, and deletes all but the newest `keep` checkpoints.
pub fn save<B: AutodiffBackend>(
    recipe: &Recipe,
    state: TrainState<'_, B>,
    step: usize,
    position: LoaderPosition,
    keep: usize,
) -> Result<(), TrainError> {
    let dir = &recipe.output;
    let werr = |reason: String| CheckpointError::Write {
        path: dir.clone(),
        reason,
    };
    std::fs::create_dir_all(dir).map_err(|e| werr(e.to_string()))?;
    let mut blobs = state.method.save_state()?;
    if let Some(name) = blobs.keys().find(|k| !k.starts_with("method.")) {
        return Err(TrainError::Config(format!(
            "the method saved a state blob `{name}`; a method's blobs must be named `method.*`"
        )));
    }
    blobs.insert(ONLINE.into(), module_to_bytes(state.net.clone())?);
    let (bn, rest) = state.opt.to_bytes().map_err(werr)?;
    blobs.insert(OPTIM_BN.into(), bn);
    blobs.insert(OPTIM_REST.into(), rest);
    let meta = CheckpointMeta {
        step,
        position,
        recipe_name: recipe.name.clone(),
        recipe: toml::to_string(recipe).map_err(|e| werr(e.to_string()))?,
        loss_scale: state.loss_scale,
    };
    let written = checkpoint_path(dir, step);
    Checkpoint { meta, blobs }.write(&written)?;
    // Rotate among the checkpoints up to this one: later ones (a run resumed from an older
    // checkpoint, e.g. past a corrupt newest) are not this run's history and stay until this
    // run overwrites them.
    let mine: Vec<_> = list_checkpoints(dir)
        .into_iter()
        .filter(|p| *p <= written)
        .collect();
    for old in mine.iter().take(mine.len().saturating_sub(keep.max(1))) {
        let _ = std::fs::remove_file(old);
    }
    Ok(())
}

/// The online network and the method's state of checkpoint `ck` (read from `path`).
pub fn restore_networks<B: AutodiffBackend>(
    ck: &Checkpoint,
    path: &Path,
    net: SslNetwork<B>,
    method: &mut Box<dyn Objective<B>>,
    device: &B::Device,
) -> Result<SslNetwork<B>, TrainError> {
    let bad = |e: rho_objectives::ObjectiveError| CheckpointError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let net =
        module_from_bytes(net, ck.blob(ONLINE, path)?, "online network", device).map_err(bad)?;
    // The method starts from the restored network, then takes its own saved state.
    *method = rho_objectives::registry::build(method.config().clone(), &net, device)?;
    method.load_state(&ck.method_state(), device).map_err(bad)?;
    Ok(net)
}

/// The optimiser state of checkpoint `ck`.
pub fn restore_optimizer<B: AutodiffBackend>(
    ck: &Checkpoint,
    path: &Path,
    opt: GroupedOptimizer<SslNetwork<B>, B>,
    device: &B::Device,
) -> Result<GroupedOptimizer<SslNetwork<B>, B>, TrainError> {
    let (bn, rest) = (ck.blob(OPTIM_BN, path)?, ck.blob(OPTIM_REST, path)?);
    Ok(opt
        .load_bytes(bn, rest, device)
        .map_err(|e| CheckpointError::Read {
            path: path.to_path_buf(),
            reason: format!("optimiser state: {e}"),
        })?)
}
