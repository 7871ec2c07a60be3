//! Weight interop with PyTorch: pytorchvideo, PySlowFast and torchvision state dicts, from
//! `.safetensors` and PyTorch pickles, and export to `.safetensors` in any of those namings.

mod export;
mod load;
mod naming;
mod pickle_nesting;
mod state_dict;

pub use export::{save_safetensors, to_state_dict, write_atomically, write_safetensors};
pub use load::{
    detect_naming, head_classes, load_state_dict, LoadOptions, LoadReport, MismatchReport,
};
pub use naming::{slots, Naming, Role, Slot, NAMINGS};
pub use pickle_nesting::MAX_NESTING;
pub use state_dict::{NonFinite, RawTensor, StateDict};

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::error::ModelError;
use crate::resnet::ResNet3d;

/// Reads `path` and loads it into `model` (see [`load_state_dict`]).
pub fn load_file<B: Backend>(
    model: ResNet3d<B>,
    path: &Path,
    opts: LoadOptions,
) -> Result<(ResNet3d<B>, LoadReport), ModelError> {
    let sd = StateDict::read_with(path, opts.non_finite)?;
    load_state_dict(model, &sd, opts).map_err(|e| match e {
        ModelError::KeyMismatch(r) => ModelError::ReadWeights {
            path: path.to_path_buf(),
            reason: r.to_string(),
        },
        other => other,
    })
}
