//! A method's state between steps (target network, queue) as named byte blobs, so that a
//! checkpoint stores whatever a method carries without knowing what it is, and a method that
//! gains state needs no new checkpoint format.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::ObjectiveError;
use crate::method::Method;
use crate::queue::{KeyQueue, KeyQueueState};

/// Named blobs, each one piece of state.
pub type StateBlobs = BTreeMap<String, Vec<u8>>;

/// The momentum target network (ρMoCo, ρBYOL).
pub const TARGET_BLOB: &str = "method.target";
/// MoCo's key queue.
pub const QUEUE_BLOB: &str = "method.queue";

/// A module's parameters and buffers as Burn named-MessagePack bytes (full precision).
pub fn module_to_bytes<B: Backend, M: Module<B>>(module: M) -> Result<Vec<u8>, ObjectiveError> {
    Recorder::<B>::record(&recorder(), module.into_record(), ())
        .map_err(|e| ObjectiveError::State(e.to_string()))
}

/// `module` with the values of [`module_to_bytes`]'s output; `what` names it in errors.
pub fn module_from_bytes<B: Backend, M: Module<B>>(
    module: M,
    bytes: &[u8],
    what: &str,
    device: &B::Device,
) -> Result<M, ObjectiveError> {
    let record = Recorder::<B>::load(&recorder(), bytes.to_vec(), device)
        .map_err(|e| ObjectiveError::State(format!("{what}: {e}")))?;
    Ok(module.load_record(record))
}

fn recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::new()
}

impl<B: AutodiffBackend> Method<B> {
    /// Everything the method carries from one step to the next.
    pub fn save_state(&self) -> Result<StateBlobs, ObjectiveError> {
        let mut blobs = StateBlobs::new();
        if let Some(t) = &self.target {
            blobs.insert(TARGET_BLOB.into(), module_to_bytes(t.target.clone())?);
        }
        if let Some(q) = &self.queue {
            blobs.insert(QUEUE_BLOB.into(), q.state().to_bytes()?);
        }
        Ok(blobs)
    }

    /// Restores what [`Method::save_state`] wrote; a blob this method needs but `blobs` lacks is
    /// an error (the state was written by another method).
    pub fn load_state(
        &mut self,
        blobs: &StateBlobs,
        device: &B::Device,
    ) -> Result<(), ObjectiveError> {
        let need = |name: &str| {
            blobs.get(name).ok_or_else(|| {
                ObjectiveError::State(format!(
                    "no `{name}` in the saved state of this {:?} run: it was written by a method without one",
                    self.config.kind
                ))
            })
        };
        if let Some(t) = &self.target {
            let bytes = need(TARGET_BLOB)?;
            let target = module_from_bytes(t.target.clone(), bytes, "target network", device)?;
            self.target = Some(crate::MomentumEncoder {
                target: target.no_grad(),
            });
        }
        if self.queue.is_some() {
            let state = KeyQueueState::from_bytes(need(QUEUE_BLOB)?)?;
            self.queue = Some(KeyQueue::from_state(&state, device)?);
        }
        Ok(())
    }
}

impl KeyQueueState {
    /// The queue as safetensors: `keys` f32 [len, dim], `videos` i64 [len], `ptr` i64 [1].
    pub fn to_bytes(&self) -> Result<Vec<u8>, ObjectiveError> {
        let bad = |e: safetensors::SafeTensorError| ObjectiveError::State(format!("queue: {e}"));
        let keys: Vec<u8> = self.keys.iter().flat_map(|v| v.to_le_bytes()).collect();
        let videos: Vec<u8> = self.videos.iter().flat_map(|v| v.to_le_bytes()).collect();
        let ptr = (self.ptr as i64).to_le_bytes();
        let views = [
            (
                "keys",
                TensorView::new(Dtype::F32, vec![self.len, self.dim], &keys).map_err(bad)?,
            ),
            (
                "ptr",
                TensorView::new(Dtype::I64, vec![1], &ptr).map_err(bad)?,
            ),
            (
                "videos",
                TensorView::new(Dtype::I64, vec![self.videos.len()], &videos).map_err(bad)?,
            ),
        ];
        safetensors::serialize(views, None).map_err(bad)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ObjectiveError> {
        let bad = |e: String| ObjectiveError::State(format!("queue: {e}"));
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let get = |name: &str, dtype: Dtype| {
            let t = st.tensor(name).map_err(|e| bad(e.to_string()))?;
            if t.dtype() != dtype {
                return Err(bad(format!(
                    "`{name}` is {:?}, expected {dtype:?}",
                    t.dtype()
                )));
            }
            Ok((t.shape().to_vec(), t.data()))
        };
        let (shape, keys) = get("keys", Dtype::F32)?;
        let [len, dim] = shape[..] else {
            return Err(bad(format!("keys of shape {shape:?}, expected [len, dim]")));
        };
        let i64s = |b: &[u8]| -> Vec<i64> {
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect()
        };
        let ptr = i64s(get("ptr", Dtype::I64)?.1);
        Ok(Self {
            len,
            dim,
            ptr: ptr.first().copied().unwrap_or(0).max(0) as usize,
            keys: keys
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
            videos: i64s(get("videos", Dtype::I64)?.1),
        })
    }
}
