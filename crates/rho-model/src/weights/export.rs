//! Writing a network's weights as `.safetensors` in any [`Naming`], atomically.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{backend::Backend, Tensor};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use super::naming::{slots, transpose, Naming, Role};
use super::state_dict::{RawTensor, StateDict};
use crate::error::ModelError;
use crate::resnet::ResNet3d;

/// The network's tensors as a state dict in `naming` and PyTorch layout, with BN
/// `num_batches_tracked` counters (0) where PyTorch modules expect them.
pub fn to_state_dict<B: Backend>(
    model: &ResNet3d<B>,
    naming: Naming,
) -> Result<StateDict, ModelError> {
    model.sync_running_stats();
    let mut collect = Collect {
        path: Vec::new(),
        values: HashMap::new(),
    };
    model.visit(&mut collect);
    let mut sd = StateDict::default();
    for slot in slots(model, naming) {
        let key = slot.key(naming)?;
        let data = collect.values.remove(&slot.rho_path).ok_or_else(|| {
            ModelError::Config(format!("internal: no tensor at `{}`", slot.rho_path))
        })?;
        let data = match slot.role {
            Role::LinearWeight => {
                let (out, inp) = (slot.torch_shape[0], slot.torch_shape[1]);
                transpose(&data, inp, out)
            }
            _ => data,
        };
        if let Some(counter) = slot.batch_counter_key(naming) {
            sd.tensors.insert(
                counter,
                RawTensor {
                    shape: vec![],
                    data: vec![0.0],
                    integer: true,
                },
            );
        }
        sd.tensors.insert(
            key,
            RawTensor {
                shape: slot.torch_shape.clone(),
                data,
                integer: false,
            },
        );
    }
    Ok(sd)
}

/// Writes `sd` to `path` as safetensors (f32, integers as i64), via a temporary file, fsync and
/// rename, so a crash never leaves a half-written file under the final name.
pub fn write_safetensors(
    sd: &StateDict,
    path: &Path,
    metadata: &[(&str, &str)],
) -> Result<(), ModelError> {
    let werr = |reason: String| ModelError::WriteWeights {
        path: path.to_path_buf(),
        reason,
    };
    let bytes: Vec<(String, Vec<u8>, Dtype, Vec<usize>)> = sd
        .tensors
        .iter()
        .map(|(k, t)| {
            if t.integer {
                let b = t
                    .data
                    .iter()
                    .flat_map(|v| (*v as i64).to_le_bytes())
                    .collect();
                (k.clone(), b, Dtype::I64, t.shape.clone())
            } else {
                let b = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
                (k.clone(), b, Dtype::F32, t.shape.clone())
            }
        })
        .collect();
    let views: Vec<(String, TensorView)> = bytes
        .iter()
        .map(|(k, b, dt, shape)| {
            TensorView::new(*dt, shape.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| werr(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let mut meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    meta.entry("format".into()).or_insert_with(|| "pt".into());
    let serialized = safetensors::serialize(views, Some(meta)).map_err(|e| werr(e.to_string()))?;
    let canonical = canonical_header(serialized).map_err(werr)?;
    write_atomically(path, &canonical).map_err(|e| werr(e.to_string()))
}

/// safetensors writes its `__metadata__` map in hash order, which differs from process to
/// process: the same weights would give different bytes (and miss every cache keyed by them).
/// The header is rewritten with every key sorted; the tensor bytes and offsets are unchanged.
fn canonical_header(serialized: Vec<u8>) -> Result<Vec<u8>, String> {
    let bad = |e: &dyn std::fmt::Display| format!("rewriting the safetensors header: {e}");
    let len = serialized
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
        .filter(|n| 8 + n <= serialized.len())
        .ok_or_else(|| bad(&"truncated"))?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&serialized[8..8 + len]).map_err(|e| bad(&e))?;
    let sorted = |m: serde_json::Map<String, serde_json::Value>| {
        let mut entries: Vec<_> = m.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries
    };
    let mut out = serde_json::Map::new();
    for (key, value) in sorted(header) {
        let value = match value {
            serde_json::Value::Object(meta) if key == "__metadata__" => {
                serde_json::Value::Object(sorted(meta).into_iter().collect())
            }
            other => other,
        };
        out.insert(key, value);
    }
    let mut text = serde_json::to_vec(&out).map_err(|e| bad(&e))?;
    // safetensors pads the header with spaces to a multiple of 8 so the data stays aligned.
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut bytes = Vec::with_capacity(8 + text.len() + serialized.len() - 8 - len);
    bytes.extend((text.len() as u64).to_le_bytes());
    bytes.extend(text);
    bytes.extend(&serialized[8 + len..]);
    Ok(bytes)
}

/// Writes `path` so that a reader sees the old file or the new one, never a part: a temporary
/// file in the same folder, fsynced, renamed over `path`, the folder fsynced (the
/// `atomic-write-file` crate). Every file rho writes goes through here.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = atomic_write_file::AtomicWriteFile::open(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Exports `model` to `path` in `naming`.
pub fn save_safetensors<B: Backend>(
    model: &ResNet3d<B>,
    path: &Path,
    naming: Naming,
) -> Result<(), ModelError> {
    let sd = to_state_dict(model, naming)?;
    write_safetensors(
        &sd,
        path,
        &[
            ("arch", &model.arch),
            ("naming", naming.as_str()),
            ("producer", "rho"),
        ],
    )
}

struct Collect {
    path: Vec<String>,
    values: HashMap<String, Vec<f32>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let data = param
            .val()
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        self.values.insert(self.path.join("."), data);
    }
}
