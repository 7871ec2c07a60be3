//! Checkpoints: everything a run needs to continue exactly where it stopped, in one file written
//! atomically (temporary file, fsync, rename), the last K kept.
//!
//! Layout: `RHOCKPT1`, then a JSON header (step, loader position, MoCo queue, recipe) and four
//! length-prefixed blobs (online network, target network, the two optimiser groups' states) as
//! Burn named-MessagePack records, each covered by a checksum in the header.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"RHOCKPT1";

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
    pub queue: Option<rho_objectives::KeyQueueState>,
    pub recipe_name: String,
    /// The resolved recipe (TOML), so the networks can be rebuilt from the file alone.
    #[serde(default)]
    pub recipe: String,
    /// FNV-1a checksums of the four blobs.
    pub checksums: [u64; 4],
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    pub online: Vec<u8>,
    /// Empty for methods without a momentum encoder.
    pub target: Vec<u8>,
    pub optim_bn: Vec<u8>,
    pub optim_rest: Vec<u8>,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Checkpoint {
    fn blobs(&self) -> [&Vec<u8>; 4] {
        [&self.online, &self.target, &self.optim_bn, &self.optim_rest]
    }

    pub fn write(&mut self, path: &Path) -> Result<(), CheckpointError> {
        let werr = |reason: String| CheckpointError::Write {
            path: path.to_path_buf(),
            reason,
        };
        self.meta.checksums = self.blobs().map(|b| fnv1a(b));
        let meta = serde_json::to_vec(&self.meta).map_err(|e| werr(e.to_string()))?;
        let mut bytes = Vec::with_capacity(
            meta.len() + self.blobs().iter().map(|b| b.len() + 8).sum::<usize>() + 16,
        );
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(meta.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&meta);
        for b in self.blobs() {
            bytes.extend_from_slice(&(b.len() as u64).to_le_bytes());
            bytes.extend_from_slice(b);
        }
        rho_model::weights::write_atomically(path, &bytes).map_err(|e| werr(e.to_string()))
    }

    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        let rerr = |reason: &str| CheckpointError::Read {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let bytes = std::fs::read(path).map_err(|e| rerr(&e.to_string()))?;
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(rerr("not a rho checkpoint"));
        }
        let mut pos = 8;
        let take = |pos: &mut usize| -> Result<Vec<u8>, CheckpointError> {
            let len_end = *pos + 8;
            let len = bytes.get(*pos..len_end).ok_or_else(|| rerr("truncated"))?;
            let len = u64::from_le_bytes(len.try_into().map_err(|_| rerr("truncated"))?) as usize;
            let body = bytes
                .get(len_end..len_end + len)
                .ok_or_else(|| rerr("truncated"))?;
            *pos = len_end + len;
            Ok(body.to_vec())
        };
        let meta: CheckpointMeta = serde_json::from_slice(&take(&mut pos)?)
            .map_err(|e| rerr(&format!("bad header ({e})")))?;
        let ck = Checkpoint {
            online: take(&mut pos)?,
            target: take(&mut pos)?,
            optim_bn: take(&mut pos)?,
            optim_rest: take(&mut pos)?,
            meta,
        };
        if ck.blobs().map(|b| fnv1a(b)) != ck.meta.checksums {
            return Err(rerr("checksum mismatch (corrupt file)"));
        }
        Ok(ck)
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
