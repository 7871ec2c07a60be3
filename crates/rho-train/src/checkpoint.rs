//! Checkpoints: everything a run needs to continue exactly where it stopped, in one file written
//! atomically (temporary file, fsync, rename), the last K kept.
//!
//! Layout (format 2): `RHOCKPT2`, the header's length (u64 LE), a JSON header (step, loader
//! position, recipe, and the name and length of every blob), the blobs, and an xxh3-64 of every
//! byte before it, so that a flipped bit anywhere (header included) is caught. Blobs are named:
//! `online` (the online network), `optim.bn` and `optim.rest` (the optimiser groups), and the
//! method's own state (`method.*`, whatever the method carries; see `rho_objectives::state`).
//! A method that gains state adds a blob, not a format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"RHOCKPT2";
/// Format 1 kept the method's state in fixed slots; this version cannot restore it.
const MAGIC_V1: &[u8; 8] = b"RHOCKPT1";

/// The online network's blob.
pub const ONLINE: &str = "online";
/// The optimiser state of the BatchNorm group and of every other parameter.
pub const OPTIM_BN: &str = "optim.bn";
pub const OPTIM_REST: &str = "optim.rest";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot write checkpoint {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckpointMeta {
    /// Steps completed.
    pub step: usize,
    pub position: rho_data::LoaderPosition,
    pub recipe_name: String,
    /// The resolved recipe (TOML), so the networks can be rebuilt from the file alone.
    #[serde(default)]
    pub recipe: String,
    /// f16 runs: the dynamic loss scale and its count of good steps.
    #[serde(default)]
    pub loss_scale: Option<crate::loss_scale::LossScaler>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    #[serde(flatten)]
    meta: CheckpointMeta,
    /// (name, length) of each blob, in file order.
    blobs: Vec<(String, u64)>,
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub blobs: BTreeMap<String, Vec<u8>>,
}

impl Checkpoint {
    /// The blob `name`; its absence names the file.
    pub fn blob(&self, name: &str, path: &Path) -> Result<&[u8], CheckpointError> {
        self.blobs
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| CheckpointError::Read {
                path: path.to_path_buf(),
                reason: format!("it has no `{name}`"),
            })
    }

    /// The method's blobs (`method.*`).
    pub fn method_state(&self) -> rho_objectives::StateBlobs {
        self.blobs
            .iter()
            .filter(|(k, _)| k.starts_with("method."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn write(&self, path: &Path) -> Result<(), CheckpointError> {
        let werr = |reason: String| CheckpointError::Write {
            path: path.to_path_buf(),
            reason,
        };
        let header = Header {
            meta: self.meta.clone(),
            blobs: self
                .blobs
                .iter()
                .map(|(k, v)| (k.clone(), v.len() as u64))
                .collect(),
        };
        let header = serde_json::to_vec(&header).map_err(|e| werr(e.to_string()))?;
        let body: usize = self.blobs.values().map(Vec::len).sum();
        let mut bytes = Vec::with_capacity(header.len() + body + 24);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        for b in self.blobs.values() {
            bytes.extend_from_slice(b);
        }
        let sum = xxhash_rust::xxh3::xxh3_64(&bytes);
        bytes.extend_from_slice(&sum.to_le_bytes());
        rho_model::weights::write_atomically(path, &bytes).map_err(|e| werr(e.to_string()))
    }

    /// The header alone (step, position, recipe), without reading or verifying the blobs: for
    /// callers that only plan around a resume ([`Checkpoint::read`] verifies the whole file).
    pub fn read_meta(path: &Path) -> Result<CheckpointMeta, CheckpointError> {
        use std::io::Read;
        let rerr = |reason: String| CheckpointError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let mut f = std::fs::File::open(path).map_err(|e| rerr(e.to_string()))?;
        let mut head = [0u8; 16];
        f.read_exact(&mut head)
            .map_err(|_| rerr("truncated".into()))?;
        if &head[..8] != MAGIC {
            return Err(rerr("not a rho checkpoint (format 2)".into()));
        }
        let len = u64::from_le_bytes(head[8..].try_into().unwrap_or_default());
        let mut header = Vec::new();
        f.take(len)
            .read_to_end(&mut header)
            .map_err(|e| rerr(e.to_string()))?;
        let header: Header = serde_json::from_slice(&header)
            .map_err(|e| rerr(format!("bad header ({e}); the file is corrupt")))?;
        Ok(header.meta)
    }

    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        let rerr = |reason: &str| CheckpointError::Read {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let meta = std::fs::metadata(path).map_err(|e| rerr(&e.to_string()))?;
        if !meta.is_file() {
            return Err(rerr("not a regular file"));
        }
        let bytes = std::fs::read(path).map_err(|e| rerr(&e.to_string()))?;
        if bytes.starts_with(MAGIC_V1) {
            return Err(rerr("it was written by an earlier rho (checkpoint format 1), which this version cannot resume; start the run afresh, or export its weights with that version"));
        }
        if bytes.len() < 24 || &bytes[..8] != MAGIC {
            return Err(rerr("not a rho checkpoint"));
        }
        let u64_at = |at: usize| -> Result<u64, CheckpointError> {
            let b = bytes.get(at..at + 8).ok_or_else(|| rerr("truncated"))?;
            Ok(u64::from_le_bytes(
                b.try_into().map_err(|_| rerr("truncated"))?,
            ))
        };
        let header_len = usize::try_from(u64_at(8)?).map_err(|_| rerr("truncated"))?;
        let header_end = 16usize
            .checked_add(header_len)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(|| rerr("truncated"))?;
        let header: Header = serde_json::from_slice(&bytes[16..header_end])
            .map_err(|e| rerr(&format!("bad header ({e}); the file is corrupt")))?;
        let mut pos = header_end;
        let mut blobs = BTreeMap::new();
        for (name, len) in header.blobs {
            let end = usize::try_from(len)
                .ok()
                .and_then(|l| pos.checked_add(l))
                .filter(|e| *e + 8 <= bytes.len())
                .ok_or_else(|| rerr("truncated"))?;
            blobs.insert(name, bytes[pos..end].to_vec());
            pos = end;
        }
        if pos + 8 != bytes.len() {
            return Err(rerr("truncated or padded (length mismatch)"));
        }
        if xxhash_rust::xxh3::xxh3_64(&bytes[..pos]) != u64_at(pos)? {
            return Err(rerr(
                "checksum mismatch (corrupt file); resume from an earlier checkpoint",
            ));
        }
        Ok(Checkpoint {
            meta: header.meta,
            blobs,
        })
    }
}

/// `ckpt_00000123.rho` files of a run folder, oldest first.
pub fn list_checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("ckpt_") && n.ends_with(".rho"))
    });
    v.sort();
    v
}

pub fn checkpoint_path(dir: &Path, step: usize) -> PathBuf {
    dir.join(format!("ckpt_{step:08}.rho"))
}
