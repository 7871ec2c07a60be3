//! `StateDict`: named f32 tensors read from `.safetensors` or PyTorch pickles, before they are
//! matched against a network.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{DType, TensorData};
use burn_store::pytorch::PytorchReader;
use safetensors::SafeTensors;

use crate::error::ModelError;

/// A tensor in PyTorch layout.
#[derive(Debug, Clone)]
pub struct RawTensor {
    pub shape: Vec<usize>,
    /// Float values; integer tensors (such as BN `num_batches_tracked`) are kept as floats too.
    pub data: Vec<f32>,
    /// Whether the source tensor was an integer tensor.
    pub integer: bool,
}

/// Named tensors, sorted by key.
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    pub tensors: BTreeMap<String, RawTensor>,
    /// Keys dropped while reading (for example a momentum encoder's `backbone_hist.*` next to
    /// the `backbone.*` that was kept), reported to the user.
    pub dropped: Vec<String>,
    /// Tensors holding NaN or infinite values (only when read with [`NonFinite::Allow`]).
    pub non_finite: Vec<String>,
}

/// Whether `path` starts like a rho pre-training checkpoint (`RHOCKPT`, any format version).
fn is_rho_checkpoint(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 7];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"RHOCKPT")
}

/// What reading does with NaN and infinite values in the weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NonFinite {
    /// Refuse the file, naming the first tensor that holds one (a diverged or corrupt run).
    #[default]
    Refuse,
    /// Read it anyway (to convert or inspect such a file); the tensors are listed in
    /// [`StateDict::non_finite`].
    Allow,
}

/// Top-level keys under which training checkpoints keep their weights.
const WRAPPER_KEYS: &[&str] = &["model_state", "state_dict", "model"];

impl StateDict {
    /// Reads `.safetensors`, or a PyTorch `.pyth/.pt/.pth/.bin` pickle (zip or legacy format),
    /// unwrapping `model_state`/`state_dict`/`model` and a `backbone.`/`module.` prefix.
    /// NaN or infinite values are refused ([`Self::read_with`] can accept them).
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        Self::read_with(path, NonFinite::Refuse)
    }

    /// [`Self::read`] with a choice of what to do with NaN or infinite values.
    pub fn read_with(path: &Path, non_finite: NonFinite) -> Result<Self, ModelError> {
        let read_err = |reason: String| ModelError::ReadWeights {
            path: path.to_path_buf(),
            reason,
        };
        if !path.exists() {
            return Err(read_err("no such file".into()));
        }
        // A FIFO or device would block the reads below.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(read_err(
                "not a regular file (a directory, FIFO or device); pass a weights file".into(),
            ));
        }
        if is_rho_checkpoint(path) {
            return Err(read_err("this is a rho training checkpoint, not a weights file; `rho eval --weights` reads it directly, and the run's backbone.safetensors holds the same backbone for the other commands".into()));
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mut sd = if ext == "safetensors" {
            Self::read_safetensors(path).map_err(read_err)?
        } else {
            Self::read_pickle(path).map_err(read_err)?
        };
        sd.strip_prefixes();
        sd.non_finite = sd
            .tensors
            .iter()
            .filter(|(_, t)| t.data.iter().any(|v| !v.is_finite()))
            .map(|(name, _)| name.clone())
            .collect();
        if let (NonFinite::Refuse, Some(name)) = (non_finite, sd.non_finite.first()) {
            let t = &sd.tensors[name];
            let bad = t.data.iter().filter(|v| !v.is_finite()).count();
            return Err(read_err(format!(
                "tensor `{name}` holds {bad} NaN or infinite value(s) of {}{}; the weights are corrupt or come from a diverged run (the CLI's --allow-non-finite reads them anyway)",
                t.data.len(),
                match sd.non_finite.len() {
                    1 => String::new(),
                    n => format!(", and {} more tensor(s) do too", n - 1),
                }
            )));
        }
        if sd.tensors.is_empty() {
            return Err(read_err("the file holds no tensors".into()));
        }
        Ok(sd)
    }

    fn read_safetensors(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| format!("not a valid safetensors file ({e})"))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let (dtype, integer) = match view.dtype() {
                safetensors::Dtype::F32 => (DType::F32, false),
                safetensors::Dtype::F64 => (DType::F64, false),
                safetensors::Dtype::F16 => (DType::F16, false),
                safetensors::Dtype::BF16 => (DType::BF16, false),
                safetensors::Dtype::I64 => (DType::I64, true),
                safetensors::Dtype::I32 => (DType::I32, true),
                other => return Err(format!("tensor `{name}` has unsupported dtype {other:?}")),
            };
            let data =
                TensorData::from_bytes_vec(view.data().to_vec(), view.shape().to_vec(), dtype);
            tensors.insert(name, to_raw(data, integer)?);
        }
        Ok(Self {
            tensors,
            ..Self::default()
        })
    }

    fn read_pickle(path: &Path) -> Result<Self, String> {
        super::pickle_nesting::check(path)?;
        // Checkpoints wrap the weights (PySlowFast: `model_state`); plain state_dicts do not.
        let mut last_err = String::new();
        let mut reader = None;
        for key in WRAPPER_KEYS {
            match PytorchReader::with_top_level_key(path, key) {
                Ok(r) if !r.is_empty() => {
                    reader = Some(r);
                    break;
                }
                Ok(_) => {}
                Err(e) => last_err = e.to_string(),
            }
        }
        let reader = match reader {
            Some(r) => r,
            None => PytorchReader::new(path).map_err(|e| {
                format!(
                    "not a readable PyTorch pickle ({e}{})",
                    if last_err.is_empty() {
                        String::new()
                    } else {
                        format!("; {last_err}")
                    }
                )
            })?,
        };
        let mut tensors = BTreeMap::new();
        for (name, snap) in reader.into_tensors() {
            let integer = !snap.dtype.is_float();
            let data = snap
                .to_data()
                .map_err(|e| format!("tensor `{name}`: {e:?}"))?;
            tensors.insert(name, to_raw(data, integer)?);
        }
        Ok(Self {
            tensors,
            ..Self::default()
        })
    }

    /// `module.` (DDP) and `backbone.` (PySlowFast's contrastive models) prefixes: when present,
    /// keep what is under them and report the rest (such as `backbone_hist.*`) as dropped.
    fn strip_prefixes(&mut self) {
        for prefix in ["module.", "backbone."] {
            if self.tensors.keys().any(|k| k.starts_with(prefix)) {
                let old = std::mem::take(&mut self.tensors);
                for (k, v) in old {
                    match k.strip_prefix(prefix) {
                        Some(rest) => {
                            self.tensors.insert(rest.to_string(), v);
                        }
                        None => self.dropped.push(k),
                    }
                }
            }
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }
}

fn to_raw(data: TensorData, integer: bool) -> Result<RawTensor, String> {
    let shape = data.shape.to_vec();
    let data = data
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    Ok(RawTensor {
        shape,
        data,
        integer,
    })
}
