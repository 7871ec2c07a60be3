//! From the recipe's dataset to the tensors of one step: the loader's settings, and a loader
//! batch cut into the micro-batches of gradient accumulation.

use burn::tensor::{backend::AutodiffBackend, Tensor, TensorData};
use rho_data::sampler::ClipSamplerConfig;
use rho_data::{LoaderConfig, ShortVideoPolicy, VideoIndex};

use super::TrainError;
use crate::recipe::Recipe;
use crate::step::MicroBatch;

/// The recipe's dataset index.
pub fn load_index(recipe: &Recipe) -> Result<VideoIndex, TrainError> {
    Ok(recipe.dataset().load()?)
}

/// The loader settings of a recipe.
pub fn loader_config(recipe: &Recipe) -> LoaderConfig {
    let d = &recipe.data;
    LoaderConfig {
        batch_size: recipe.batch,
        workers: d.workers,
        prefetch: 2,
        seed: recipe.seed,
        sampler: ClipSamplerConfig {
            frames: d.frames,
            stride: d.stride,
            rho: d.rho,
            max_timespan_s: d.max_timespan_s,
        },
        augment: d.augment.apply(d.crop),
        short_side: d.short_side,
        decode_timeout_s: 120.0,
        max_substitutions: 10,
        short_videos: ShortVideoPolicy::Pad,
        frame_folder_fps: 30.0,
        views: Default::default(),
        shard: Default::default(),
    }
}

/// Length and a hash of the index's paths, in order (every rank must read the same list).
pub fn index_signature(index: &VideoIndex) -> (u64, u64) {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for e in &index.entries {
        h.update(e.source.path().as_os_str().as_encoded_bytes());
        h.update(&[0]);
    }
    (index.len() as u64, h.digest())
}

/// A loader batch [b, V, 3, T, H, W] as `accum` micro-batches of V clip tensors, each with the
/// dataset indices of its videos.
pub fn micro_batches<B: AutodiffBackend>(
    batch: &rho_data::Batch,
    accum: usize,
    device: &B::Device,
) -> Vec<MicroBatch<B>> {
    let [b, v, c, t, h, w] = batch.shape;
    let per_view = c * t * h * w;
    let micro = b / accum; // `b` is this rank's shard
    (0..accum)
        .map(|part| {
            let rows = part * micro..(part + 1) * micro;
            let clips = (0..v)
                .map(|k| {
                    let mut data = Vec::with_capacity(micro * per_view);
                    for i in rows.clone() {
                        let start = (i * v + k) * per_view;
                        data.extend_from_slice(&batch.clips[start..start + per_view]);
                    }
                    Tensor::from_data(TensorData::new(data, [micro, c, t, h, w]), device)
                })
                .collect();
            let videos = rows.map(|i| batch.samples[i] as u64).collect();
            MicroBatch { clips, videos }
        })
        .collect()
}
