//! Matching a [`StateDict`] against a network and writing the tensors into it.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::naming::{slots, transpose, Naming, Role, Slot, NAMINGS};
use super::state_dict::{NonFinite, StateDict};
use crate::error::ModelError;
use crate::resnet::ResNet3d;

/// How many keys an error lists per category before it says "and N more".
const LIST_LIMIT: usize = 12;

/// Options for [`load_state_dict`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Naming of the file; `None` detects it from the keys.
    pub naming: Option<Naming>,
    /// Accept a missing or mis-shaped classification head (it keeps its fresh init). The
    /// backbone must always match completely.
    pub allow_partial: bool,
    /// What reading a file does with NaN or infinite values.
    pub non_finite: NonFinite,
}

/// Why weights do not fit a network.
#[derive(Debug, Clone)]
pub struct MismatchReport {
    pub arch: String,
    pub naming: Naming,
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    /// (key, shape in file, shape expected)
    pub mis_shaped: Vec<(String, Vec<usize>, Vec<usize>)>,
}

fn list(f: &mut fmt::Formatter<'_>, what: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return Ok(());
    }
    write!(f, "\n  {} {what}:", items.len())?;
    for k in items.iter().take(LIST_LIMIT) {
        write!(f, "\n    {k}")?;
    }
    if items.len() > LIST_LIMIT {
        write!(f, "\n    … and {} more", items.len() - LIST_LIMIT)?;
    }
    Ok(())
}

impl fmt::Display for MismatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the weights do not fit `{}` (keys read as {} naming):",
            self.arch, self.naming
        )?;
        list(f, "missing keys", &self.missing)?;
        list(f, "unexpected keys", &self.unexpected)?;
        let shaped: Vec<String> = self
            .mis_shaped
            .iter()
            .map(|(k, got, want)| format!("{k}: file has {got:?}, network needs {want:?}"))
            .collect();
        list(f, "mis-shaped keys", &shaped)?;
        write!(
            f,
            "\n  check --arch and --naming; `--allow-partial` accepts a missing or different classification head"
        )
    }
}

/// What a successful load did.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub naming: Naming,
    pub applied: usize,
    /// Head tensors left at their initial values (`allow_partial`).
    pub skipped_head: Vec<String>,
    /// Keys of the file that were not used but are harmless (BN counters, dropped wrappers).
    pub ignored: Vec<String>,
}

/// Detects the naming of a state dict from its stem keys.
pub fn detect_naming(sd: &StateDict) -> Option<Naming> {
    let has = |k: &str| sd.tensors.contains_key(k);
    if has("stem.unit.conv.weight") {
        Some(Naming::Rho)
    } else if has("blocks.0.conv.weight") {
        Some(Naming::Pytorchvideo)
    } else if has("s1.pathway0_stem.conv.weight") {
        Some(Naming::Pyslowfast)
    } else if has("stem.0.weight") {
        Some(Naming::Torchvision)
    } else {
        None
    }
}

/// The number of classes of the head stored in `sd`, if it has one the network could use.
pub fn head_classes(sd: &StateDict, naming: Naming, num_stages: usize) -> Option<usize> {
    let key = match naming {
        Naming::Rho => "head.proj.weight".to_string(),
        Naming::Pytorchvideo => format!("blocks.{}.proj.weight", num_stages + 1),
        Naming::Pyslowfast => "head.projection.weight".into(),
        Naming::Torchvision => "fc.weight".into(),
    };
    sd.tensors
        .get(&key)
        .filter(|t| t.shape.len() == 2)
        .map(|t| t.shape[0])
}

/// Loads `sd` into `model`, checking every key and shape first; the model is unchanged on error.
pub fn load_state_dict<B: Backend>(
    model: ResNet3d<B>,
    sd: &StateDict,
    opts: LoadOptions,
) -> Result<(ResNet3d<B>, LoadReport), ModelError> {
    let naming = match opts.naming.or_else(|| detect_naming(sd)) {
        Some(n) => n,
        None => {
            let sample: Vec<String> = sd.keys().take(LIST_LIMIT).cloned().collect();
            return Err(ModelError::Config(format!(
                "cannot tell the naming of these weights (first keys: {}); pass --naming {}",
                sample.join(", "),
                NAMINGS
                    .iter()
                    .map(|n| n.as_str())
                    .collect::<Vec<_>>()
                    .join("|")
            )));
        }
    };
    let table = slots(&model, naming);
    let mut report = MismatchReport {
        arch: model.arch.clone(),
        naming,
        missing: vec![],
        unexpected: vec![],
        mis_shaped: vec![],
    };
    let mut used = BTreeSet::new();
    let mut values: HashMap<String, TensorData> = HashMap::new();
    let mut skipped_head = Vec::new();
    for slot in &table {
        let key = slot.key(naming)?;
        if let Some(c) = slot.batch_counter_key(naming) {
            used.insert(c);
        }
        match sd.tensors.get(&key) {
            None if slot.role.is_head() && opts.allow_partial => skipped_head.push(key),
            None => report.missing.push(key),
            Some(t) if t.shape != slot.torch_shape => {
                used.insert(key.clone());
                if slot.role.is_head() && opts.allow_partial {
                    skipped_head.push(key);
                } else {
                    report
                        .mis_shaped
                        .push((key, t.shape.clone(), slot.torch_shape.clone()));
                }
            }
            Some(t) => {
                used.insert(key.clone());
                values.insert(slot.rho_path.clone(), to_burn_layout(slot, &t.data));
            }
        }
    }
    let mut ignored: Vec<String> = sd.dropped.clone();
    for k in sd.keys() {
        if used.contains(k) {
            continue;
        }
        if k.ends_with("num_batches_tracked") && naming.has_batch_counters() {
            ignored.push(k.clone());
        } else {
            report.unexpected.push(k.clone());
        }
    }
    // With `allow_partial`, whatever the file keeps under the head's prefix (a classifier of
    // another size, an SSL projection MLP) is left out instead of failing the load.
    if opts.allow_partial {
        let prefix = head_prefix(naming, model.stages.len());
        report.unexpected.retain(|k| {
            let head = k.starts_with(&prefix);
            if head {
                ignored.push(k.clone());
            }
            !head
        });
    }
    if !(report.missing.is_empty() && report.unexpected.is_empty() && report.mis_shaped.is_empty())
    {
        return Err(ModelError::KeyMismatch(Box::new(report)));
    }
    let applied = values.len();
    let device = model.stem.unit.conv.weight.device();
    let mut mapper = Assign {
        path: Vec::new(),
        values,
        device,
    };
    let model = model.map(&mut mapper);
    if !mapper.values.is_empty() {
        let left: Vec<String> = mapper.values.keys().cloned().collect();
        return Err(ModelError::Config(format!(
            "internal: the naming table has paths the network does not: {}",
            left.join(", ")
        )));
    }
    Ok((
        model,
        LoadReport {
            naming,
            applied,
            skipped_head,
            ignored,
        },
    ))
}

fn head_prefix(naming: Naming, num_stages: usize) -> String {
    match naming {
        Naming::Rho => "head.".into(),
        Naming::Pytorchvideo => format!("blocks.{}.", num_stages + 1),
        Naming::Pyslowfast => "head.".into(),
        Naming::Torchvision => "fc.".into(),
    }
}

fn to_burn_layout(slot: &Slot, data: &[f32]) -> TensorData {
    match slot.role {
        Role::LinearWeight => {
            let (out, inp) = (slot.torch_shape[0], slot.torch_shape[1]);
            TensorData::new(transpose(data, out, inp), [inp, out])
        }
        _ => TensorData::new(data.to_vec(), slot.torch_shape.clone()),
    }
}

/// Replaces each float tensor whose module path has a value.
struct Assign<B: Backend> {
    path: Vec<String>,
    values: HashMap<String, TensorData>,
    device: B::Device,
}

impl<B: Backend> ModuleMapper<B> for Assign<B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let key = self.path.join(".");
        let tensor = match self.values.remove(&key) {
            Some(data) => {
                let t = Tensor::<B, D>::from_data(data, &self.device);
                if tensor.is_require_grad() {
                    t.require_grad()
                } else {
                    t
                }
            }
            None => tensor,
        };
        Param::from_mapped_value(id, tensor, mapper)
    }
}
