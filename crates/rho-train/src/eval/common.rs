//! Pieces every protocol shares: the loaders of docs/method.md §3.3/§5.1, class counts, the
//! optimiser rule, and scoring the test views with a linear head.

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::{
    backend::AutodiffBackend, backend::Backend, ElementConversion, Int, Tensor, TensorData,
};
use rho_data::augment::AugmentConfig;
use rho_data::sampler::ClipSamplerConfig;
use rho_data::{LoaderConfig, ShortVideoPolicy, VideoIndex, ViewMode};
use rho_model::ClassificationHead;

use super::features::FeatureSet;
use super::metrics::{mean_softmax, Scores};
use super::recipe::EvalRecipe;
use super::EvalError;
use crate::optim::SgdRule;

fn base_loader(r: &EvalRecipe, batch: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: batch,
        workers: r.data.workers,
        prefetch: 2,
        seed: r.seed,
        sampler: ClipSamplerConfig {
            frames: r.data.frames,
            stride: r.data.stride,
            rho: 1,
            max_timespan_s: None,
        },
        augment: AugmentConfig::default(),
        short_side: r.data.short_side,
        decode_timeout_s: 120.0,
        max_substitutions: 10,
        short_videos: ShortVideoPolicy::Pad,
        frame_folder_fps: 30.0,
        views: ViewMode::Single,
        shard: Default::default(),
    }
}

/// Training clips (docs/method.md §3.3): one clip per video at a random time, a random square
/// crop whose area matches short-side jitter [S, 1.25·S] followed by the crop, flip; with
/// `data.color`, the fine-tuning colour augmentation (grayscale 0.2, then jitter 0.4/0.4/0.4/0.1
/// always).
pub fn train_loader(r: &EvalRecipe) -> LoaderConfig {
    let mut c = base_loader(r, r.batch);
    let ratio = r.data.crop as f64 / r.data.short_side as f64;
    let color = r.data.color;
    c.augment = AugmentConfig {
        size: r.data.crop,
        area: ((ratio / 1.25).powi(2).min(1.0), ratio.powi(2).min(1.0)),
        aspect: (1.0, 1.0),
        flip_p: 0.5,
        jitter: if color {
            [0.4, 0.4, 0.4, 0.1]
        } else {
            [0.0; 4]
        },
        jitter_p: if color { 1.0 } else { 0.0 },
        grayscale_p: if color { 0.2 } else { 0.0 },
        blur_p: 0.0,
        ..AugmentConfig::default()
    };
    c
}

/// Test views (docs/method.md §5.1): `test_clips` uniform clips × `test_crops` crops of
/// `test_crop` pixels from frames resized to that size on their short side.
pub fn test_loader(r: &EvalRecipe, batch: usize) -> LoaderConfig {
    let mut c = base_loader(r, batch);
    let size = r.test_crop();
    c.short_side = size as u32;
    c.augment.size = size;
    c.views = ViewMode::Test {
        clips: r.data.test_clips,
        crops: r.data.test_crops,
    };
    c
}

/// The kNN bank: each training video through its centre clip and centre crop.
pub fn bank_loader(r: &EvalRecipe) -> LoaderConfig {
    let mut bank = r.clone();
    bank.data.test_clips = 1;
    bank.data.test_crops = 1;
    test_loader(&bank, r.batch.min(64))
}

/// Videos per evaluation batch, so that a batch of views stays near the training batch.
pub fn test_batch(r: &EvalRecipe) -> usize {
    (r.batch / (r.data.test_clips * r.data.test_crops)).max(1)
}

/// Class ids above this (and above the number of videos) are taken for a corrupt label.
const MAX_CLASSES: usize = 100_000;

/// Classes of a train/test pair: the index's class list, else the largest label + 1; labels
/// outside are an error.
pub fn class_count(train: &VideoIndex, test: &VideoIndex) -> Result<usize, EvalError> {
    let max_label = train
        .entries
        .iter()
        .chain(&test.entries)
        .filter_map(|e| e.label)
        .max()
        .unwrap_or(0);
    let named = train.classes.len().max(test.classes.len());
    if named > 0 && max_label >= named {
        return Err(EvalError::Config(format!(
            "label {max_label} is outside the {named} classes the index names"
        )));
    }
    // Without class names, the labels must look like class ids of this dataset: a stray
    // 2·10⁹ would otherwise size the classifier (and its memory) by itself.
    let videos = train.len() + test.len();
    if named == 0 && max_label >= MAX_CLASSES.max(videos) {
        return Err(EvalError::Config(format!(
            "label {max_label} is larger than any class id of {videos} videos could be (at most {}); check the label column of the lists",
            MAX_CLASSES.max(videos) - 1
        )));
    }
    Ok(named.max(max_label + 1))
}

pub fn sgd_rule(r: &EvalRecipe) -> SgdRule {
    SgdRule {
        momentum: r.optim.momentum,
        nesterov: r.optim.nesterov,
        weight_decay: r.optim.weight_decay,
        lars_trust: None,
    }
}

/// Cross-entropy of `logits` against `labels`, and whether it is finite.
pub fn cross_entropy<B: AutodiffBackend>(logits: Tensor<B, 2>, labels: &[usize]) -> Tensor<B, 1> {
    let device = logits.device();
    let y = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            labels.iter().map(|l| *l as i64).collect::<Vec<_>>(),
            [labels.len()],
        ),
        &device,
    );
    CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, y)
}

/// The loss as a number; NaN/Inf stop the run with the step named.
pub fn checked_loss<B: Backend>(loss: &Tensor<B, 1>, what: &str) -> Result<f64, EvalError> {
    let v: f64 = loss.clone().into_scalar().elem::<f64>();
    if v.is_finite() {
        Ok(v)
    } else {
        Err(EvalError::Config(format!(
            "the loss is {v} at {what}; lower optim.base_lr"
        )))
    }
}

/// Supervised epochs over `index` with the recipe's training clips and LR schedule (per
/// iteration, at the fractional epoch). `step(clips, labels, lr, what)` trains on one batch and
/// returns its loss; the mean loss of each epoch is returned.
pub fn train_epochs<B: AutodiffBackend>(
    r: &EvalRecipe,
    index: &VideoIndex,
    device: &B::Device,
    progress: &mut super::Progress,
    phase: &str,
    mut step: impl FnMut(Tensor<B, 5>, &[usize], f64, &str) -> Result<f64, EvalError>,
) -> Result<Vec<f64>, EvalError> {
    let mut loader = rho_data::VideoLoader::new(index.clone(), train_loader(r))?;
    let iters = loader.batches_per_epoch();
    let epochs = r.epochs.ceil() as usize;
    let mut curve = Vec::with_capacity(epochs);
    for epoch in 0..epochs {
        let mut total = 0.0;
        // Drain the epoch's iterator (it moves the loader to the next epoch when it ends).
        for (it, batch) in loader.epoch().enumerate() {
            let e = epoch as f64 + it as f64 / iters as f64;
            if e >= r.epochs {
                break;
            }
            let batch = batch?;
            let [b, v, c, t, h, w] = batch.shape;
            let y = super::features::labels_of_batch(&batch)?;
            let x = Tensor::<B, 5>::from_data(
                TensorData::new(batch.clips, [b * v, c, t, h, w]),
                device,
            );
            total += step(
                x,
                &y,
                r.lr(e),
                &format!("{phase} epoch {epoch}, iteration {it}"),
            )?;
        }
        curve.push(total / iters.max(1) as f64);
        progress(phase, epoch + 1, epochs);
    }
    Ok(curve)
}

/// Softmax over classes of `head` applied to each view, averaged over the views of a video.
pub fn head_scores<B: AutodiffBackend>(
    head: &ClassificationHead<B>,
    test: &FeatureSet,
    classes: usize,
    device: &B::Device,
) -> Scores {
    let head = head.valid();
    let rows = test.n * test.views;
    let mut logits = Vec::with_capacity(rows * classes);
    const CHUNK: usize = 4096;
    for start in (0..rows).step_by(CHUNK) {
        let r = CHUNK.min(rows - start);
        let x = Tensor::<B::InnerBackend, 2>::from_data(
            TensorData::new(
                test.features[start * test.dim..(start + r) * test.dim].to_vec(),
                [r, test.dim],
            ),
            device,
        );
        logits.extend(
            head.forward(x)
                .into_data()
                .convert::<f32>()
                .into_vec::<f32>()
                .unwrap_or_default(),
        );
    }
    Scores {
        scores: mean_softmax(&logits, classes, test.views),
        classes,
        labels: test.labels.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::class_count;
    use rho_data::{VideoEntry, VideoIndex, VideoSource};

    fn index(labels: &[usize]) -> VideoIndex {
        VideoIndex {
            entries: labels
                .iter()
                .map(|&l| VideoEntry {
                    source: VideoSource::File(format!("v{l}.mp4").into()),
                    label: Some(l),
                })
                .collect(),
            classes: Vec::new(),
        }
    }

    #[test]
    fn a_huge_label_is_an_error_not_a_classifier_of_that_size() {
        assert_eq!(class_count(&index(&[0, 3]), &index(&[1])).unwrap(), 4);
        let e = class_count(&index(&[0, 2_000_000_000]), &index(&[1]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2000000000") && e.contains("label column"),
            "{e}"
        );
    }
}
