//! Pooled backbone features of every video of an index, view by view, optionally cached on disk
//! as safetensors (`features` [N, V, D] f32, `labels` [N] i64) keyed by everything that
//! determines them, so that a second probing run or a kNN evaluation skips the backbone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{backend::Backend, Tensor, TensorData};
use rho_data::{LoaderConfig, VideoIndex, VideoLoader};
use rho_model::ResNet3d;

use super::EvalError;

/// Features of N videos × V views × D dims, with labels.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSet {
    pub features: Vec<f32>,
    pub n: usize,
    pub views: usize,
    pub dim: usize,
    pub labels: Vec<usize>,
}

impl FeatureSet {
    /// The D features of video `i`, view `v`.
    pub fn get(&self, i: usize, v: usize) -> &[f32] {
        let at = (i * self.views + v) * self.dim;
        &self.features[at..at + self.dim]
    }

    /// Several sets of the same videos (e.g. augmented epochs) as one set with their views side
    /// by side.
    pub fn concat_views(sets: &[FeatureSet]) -> FeatureSet {
        let first = &sets[0];
        let views: usize = sets.iter().map(|s| s.views).sum();
        let mut features = Vec::with_capacity(first.n * views * first.dim);
        for i in 0..first.n {
            for s in sets {
                features
                    .extend_from_slice(&s.features[i * s.views * s.dim..(i + 1) * s.views * s.dim]);
            }
        }
        FeatureSet {
            features,
            n: first.n,
            views,
            dim: first.dim,
            labels: first.labels.clone(),
        }
    }
}

/// Runs `backbone` (inference mode: BN with running statistics) over every video of `index`
/// with the views of `cfg` (`epoch` picks the random draws of augmented views).
pub fn extract<B: Backend>(
    backbone: &ResNet3d<B>,
    index: &VideoIndex,
    cfg: &LoaderConfig,
    epoch: u64,
    device: &B::Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<FeatureSet, EvalError> {
    let labels = labels_of(index)?;
    let mut cfg = cfg.clone();
    cfg.seed = cfg.seed.wrapping_add(epoch.wrapping_mul(0x9e37_79b9));
    let loader = VideoLoader::for_evaluation(index.clone(), cfg.clone())?;
    let (n, views, dim) = (index.len(), cfg.views(), backbone.feature_dim());
    let mut features = Vec::with_capacity(n * views * dim);
    for batch in loader.in_order() {
        let batch = batch?;
        let [b, v, c, t, h, w] = batch.shape;
        let x =
            Tensor::<B, 5>::from_data(TensorData::new(batch.clips, [b * v, c, t, h, w]), device);
        let f = backbone.try_features(x)?;
        features.extend(
            f.into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .map_err(|e| EvalError::Config(format!("reading features back: {e:?}")))?,
        );
        progress(features.len() / (views * dim), n);
    }
    Ok(FeatureSet {
        features,
        n,
        views,
        dim,
        labels,
    })
}

/// Class ids of every entry; an unlabelled video is an error (evaluation needs labels).
pub fn labels_of(index: &VideoIndex) -> Result<Vec<usize>, EvalError> {
    index
        .entries
        .iter()
        .map(|e| {
            e.label.ok_or_else(|| {
                EvalError::Config(format!(
                    "{} has no label; evaluation lists need a class id on every line",
                    e.source.path().display()
                ))
            })
        })
        .collect()
}

/// A cache of feature sets in a folder.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    pub dir: PathBuf,
}

impl FeatureCache {
    /// The file for a key made of everything that determines the features.
    pub fn path(&self, key_parts: &[&str]) -> PathBuf {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for p in key_parts {
            hasher.update(p.as_bytes());
            hasher.update(&[0xff]);
        }
        let h = hasher.digest();
        self.dir.join(format!("features-{h:016x}.safetensors"))
    }

    pub fn load(&self, path: &Path) -> Option<FeatureSet> {
        let bytes = std::fs::read(path).ok()?;
        let st = safetensors::SafeTensors::deserialize(&bytes).ok()?;
        let f = st.tensor("features").ok()?;
        let l = st.tensor("labels").ok()?;
        let shape = f.shape().to_vec();
        if shape.len() != 3 || f.dtype() != safetensors::Dtype::F32 {
            return None;
        }
        // A file that fails its checksum (or predates it) is recomputed, not trusted.
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).ok()?;
        let stored = header.metadata().as_ref()?.get("xxh3")?;
        if *stored != checksum(f.data(), l.data()) {
            return None;
        }
        let features = f
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let labels = l
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as usize)
            .collect();
        Some(FeatureSet {
            features,
            n: shape[0],
            views: shape[1],
            dim: shape[2],
            labels,
        })
    }

    /// Writes atomically (a crash leaves no half file that a later run would trust).
    pub fn store(&self, path: &Path, set: &FeatureSet) -> Result<(), EvalError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| EvalError::Config(format!("cannot create {}: {e}", self.dir.display())))?;
        let fbytes: Vec<u8> = set.features.iter().flat_map(|v| v.to_le_bytes()).collect();
        let lbytes: Vec<u8> = set
            .labels
            .iter()
            .flat_map(|v| (*v as i64).to_le_bytes())
            .collect();
        fn views(
            dtype: safetensors::Dtype,
            shape: Vec<usize>,
            data: &[u8],
        ) -> Result<safetensors::tensor::TensorView<'_>, EvalError> {
            safetensors::tensor::TensorView::new(dtype, shape, data)
                .map_err(|e| EvalError::Config(format!("feature cache: {e}")))
        }
        let tensors = HashMap::from([
            (
                "features".to_string(),
                views(
                    safetensors::Dtype::F32,
                    vec![set.n, set.views, set.dim],
                    &fbytes,
                )?,
            ),
            (
                "labels".to_string(),
                views(safetensors::Dtype::I64, vec![set.n], &lbytes)?,
            ),
        ]);
        let sum = HashMap::from([("xxh3".to_string(), checksum(&fbytes, &lbytes))]);
        let bytes = safetensors::serialize(&tensors, Some(sum))
            .map_err(|e| EvalError::Config(format!("feature cache: {e}")))?;
        rho_model::weights::write_atomically(path, &bytes)
            .map_err(|e| EvalError::Config(format!("cannot write {}: {e}", path.display())))
    }
}

/// The checksum a cache file stores of its features and labels.
fn checksum(features: &[u8], labels: &[u8]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(features);
    h.update(labels);
    format!("{:016x}", h.digest())
}

/// A fingerprint of a file's bytes (for cache keys).
pub fn file_fingerprint(path: &Path) -> Result<String, EvalError> {
    let bytes = std::fs::read(path)
        .map_err(|e| EvalError::Config(format!("cannot read {}: {e}", path.display())))?;
    let h = xxhash_rust::xxh3::xxh3_64(&bytes);
    Ok(format!("{h:016x}-{}", bytes.len()))
}

/// Labels of a loader batch; an unlabelled video is an error.
pub fn labels_of_batch(batch: &rho_data::Batch) -> Result<Vec<usize>, EvalError> {
    batch
        .labels
        .iter()
        .zip(&batch.samples)
        .map(|(l, s)| {
            l.ok_or_else(|| {
                EvalError::Config(format!(
                    "video {s} of the training list has no label; evaluation needs labels"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{FeatureCache, FeatureSet};

    #[test]
    fn a_cache_file_that_fails_its_checksum_is_a_miss() {
        let dir = std::env::temp_dir().join(format!("rho-cache-{}", std::process::id()));
        let cache = FeatureCache { dir: dir.clone() };
        let set = FeatureSet {
            features: vec![0.5; 2 * 3],
            n: 2,
            views: 1,
            dim: 3,
            labels: vec![0, 1],
        };
        let path = cache.path(&["key"]);
        cache.store(&path, &set).unwrap();
        assert_eq!(
            cache.load(&path).map(|s| s.features),
            Some(set.features.clone())
        );
        // NaN written over the last feature: the file no longer verifies.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes
            .windows(4)
            .rposition(|w| w == 0.5f32.to_le_bytes())
            .unwrap();
        bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(cache.load(&path).is_none());
    }
}
