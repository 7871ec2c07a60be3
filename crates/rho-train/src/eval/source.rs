//! Where evaluated weights come from: a rho checkpoint (its online backbone,
//! docs/method.md §2.7), a rho or PyTorch `.safetensors` / `.pth` / `.pyth` file (pytorchvideo,
//! PySlowFast — the released ρ-models — or torchvision naming, detected), or a random
//! initialisation for baselines.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use rho_model::weights::{load_file, LoadOptions};
use rho_model::{ResNet3d, ResNet3dConfig};

use super::EvalError;
use crate::checkpoint::Checkpoint;
use crate::recipe::Recipe;

/// The weights to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightSource {
    /// A `.rho` checkpoint or a weights file.
    File(PathBuf),
    /// He initialisation with this seed (the "random features" baseline).
    Random { seed: u64 },
}

impl WeightSource {
    /// Words for reports.
    pub fn describe(&self) -> String {
        match self {
            WeightSource::File(p) => p.display().to_string(),
            WeightSource::Random { seed } => format!("random initialisation (seed {seed})"),
        }
    }
}

/// Builds the backbone (without head) and loads `source` into it. `arch` is needed unless the
/// source is a rho checkpoint (which carries its recipe); when both are given they must agree.
pub fn load_backbone<B: Backend>(
    source: &WeightSource,
    arch: Option<&str>,
    device: &B::Device,
) -> Result<ResNet3d<B>, EvalError> {
    let need_arch = || {
        arch.map(str::to_string).ok_or_else(|| {
            EvalError::Config(format!(
                "{} carries no network shape: set model.arch in the recipe or pass --arch",
                source.describe()
            ))
        })
    };
    match source {
        WeightSource::Random { seed } => {
            B::seed(device, *seed);
            Ok(ResNet3dConfig::preset(&need_arch()?)?.try_init(device)?)
        }
        WeightSource::File(path) if is_checkpoint(path) => {
            let (backbone, ck_arch) = from_checkpoint(path, device)?;
            if let Some(a) = arch.filter(|a| *a != ck_arch) {
                return Err(EvalError::Config(format!(
                    "{} holds a {ck_arch} network, but the recipe asks for {a}",
                    path.display()
                )));
            }
            Ok(backbone)
        }
        WeightSource::File(path) => {
            let model = ResNet3dConfig::preset(&need_arch()?)?.try_init::<B>(device)?;
            let (mut model, _report) = load_file(
                model,
                path,
                LoadOptions {
                    naming: None,
                    allow_partial: true,
                    ..Default::default()
                },
            )?;
            model.head = None;
            Ok(model)
        }
    }
}

fn is_checkpoint(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rho")
}

/// The online backbone of a rho pre-training checkpoint (the momentum encoder is not evaluated).
fn from_checkpoint<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<(ResNet3d<B>, String), EvalError> {
    let ck = Checkpoint::read(path)?;
    let bad = |reason: String| EvalError::Config(format!("{}: {reason}", path.display()));
    if ck.meta.recipe.is_empty() {
        return Err(bad("the checkpoint predates embedded recipes; export its backbone with a newer rho or pass the run's backbone.safetensors with --arch".into()));
    }
    let recipe = Recipe::parse(&ck.meta.recipe, &path.display().to_string(), &[])
        .map_err(|e| bad(e.to_string()))?;
    let backbone = ResNet3dConfig::preset(&recipe.model.arch)?.try_init::<B>(device)?;
    let net = recipe.method_config().build_network(backbone, device);
    let online = ck.blob(crate::checkpoint::ONLINE, path)?;
    let net = rho_objectives::module_from_bytes(net, online, "online network", device)
        .map_err(|e| bad(e.to_string()))?;
    Ok((net.backbone, recipe.model.arch))
}

/// Whether a path is something [`load_backbone`] reads.
pub fn exists(path: &Path) -> Result<(), EvalError> {
    if path.exists() {
        Ok(())
    } else {
        Err(EvalError::Config(format!(
            "weights {} do not exist (a run folder holds ckpt_*.rho and backbone.safetensors)",
            path.display()
        )))
    }
}
