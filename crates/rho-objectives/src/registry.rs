//! The method registry: the paper's four methods and any [`register`]ed one, each a name, a
//! one-line description and a constructor. A recipe's `method.kind` is looked up here, so a new
//! method is one `register` call (and its [`Objective`] implementation): the trainer, recipes,
//! checkpoints and data parallelism need no change.

use std::any::Any;
use std::sync::{LazyLock, RwLock};

use burn::tensor::backend::AutodiffBackend;

use crate::error::ObjectiveError;
use crate::method::{Method, MethodConfig, MethodKind};
use crate::network::SslNetwork;
use crate::objective::Objective;

/// A method as recipes and `rho models` name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodInfo {
    /// The recipe's `method.kind`.
    pub name: String,
    pub description: String,
    /// The paper method whose preset (projection MLP, predictor, prototypes, constants) the
    /// method's network and configuration start from.
    pub preset: MethodKind,
}

/// Builds a registered method for backend `B` from its configuration and the online network.
pub type MethodBuilder<B> = fn(
    MethodConfig,
    &SslNetwork<B>,
    &burn::tensor::Device<B>,
) -> Result<Box<dyn Objective<B>>, ObjectiveError>;

const BUILTIN: [(MethodKind, &str, &str); 4] = [
    (
        MethodKind::Moco,
        "moco",
        "ρMoCo: InfoNCE against a momentum encoder's keys and a queue of negatives",
    ),
    (
        MethodKind::Byol,
        "byol",
        "ρBYOL: a predictor regresses a momentum target's projections (no negatives)",
    ),
    (
        MethodKind::Simclr,
        "simclr",
        "ρSimCLR: NT-Xent, the other videos of the batch as negatives",
    ),
    (
        MethodKind::Swav,
        "swav",
        "ρSwAV: swapped prediction of Sinkhorn-Knopp cluster assignments",
    ),
];

struct Registered {
    info: MethodInfo,
    /// A `MethodBuilder<B>` for the backend it was registered for.
    builder: Box<dyn Any + Send + Sync>,
    backend: &'static str,
}

static REGISTERED: LazyLock<RwLock<Vec<Registered>>> = LazyLock::new(Default::default);

/// Every method: the paper's four, then the registered ones.
pub fn methods() -> Vec<MethodInfo> {
    let builtin = BUILTIN.iter().map(|(kind, name, description)| MethodInfo {
        name: name.to_string(),
        description: description.to_string(),
        preset: *kind,
    });
    let registered = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    builtin
        .chain(registered.iter().map(|r| r.info.clone()))
        .collect()
}

/// Adds a method for backend `B` (its name must be new).
pub fn register<B: AutodiffBackend>(
    info: MethodInfo,
    build: MethodBuilder<B>,
) -> Result<(), ObjectiveError> {
    let mut all = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if BUILTIN.iter().any(|b| b.1 == info.name) || all.iter().any(|r| r.info.name == info.name) {
        return Err(ObjectiveError::Config(format!(
            "a method called `{}` exists already",
            info.name
        )));
    }
    all.push(Registered {
        info,
        builder: Box::new(build),
        backend: std::any::type_name::<B>(),
    });
    Ok(())
}

/// The method called `name`: its preset, and for a registered method its name (the
/// configuration's `objective`).
pub fn resolve(name: &str) -> Result<(MethodKind, Option<String>), ObjectiveError> {
    if let Some((kind, ..)) = BUILTIN.iter().find(|b| b.1 == name) {
        return Ok((*kind, None));
    }
    methods()
        .into_iter()
        .find(|m| m.name == name)
        .map(|m| (m.preset, Some(m.name)))
        .ok_or_else(|| {
            let known: Vec<String> = methods().into_iter().map(|m| m.name).collect();
            ObjectiveError::Config(format!(
                "unknown method `{name}`; known: {}",
                known.join(", ")
            ))
        })
}

/// The objective of `config` around `online`: the registered method its `objective` names, or
/// the paper method of its `kind`.
pub fn build<B: AutodiffBackend>(
    config: MethodConfig,
    online: &SslNetwork<B>,
    device: &B::Device,
) -> Result<Box<dyn Objective<B>>, ObjectiveError> {
    let Some(name) = config.objective.clone() else {
        return Ok(Box::new(Method::new(config, online, device)?));
    };
    let all = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    let r = all
        .iter()
        .find(|r| r.info.name == name)
        .ok_or_else(|| ObjectiveError::Config(format!("no method `{name}` is registered")))?;
    let build = r
        .builder
        .downcast_ref::<MethodBuilder<B>>()
        .ok_or_else(|| {
            ObjectiveError::Config(format!(
                "method `{name}` is registered for the backend {}, not {}",
                r.backend,
                std::any::type_name::<B>()
            ))
        })?;
    config.validate()?;
    build(config, online, device)
}
