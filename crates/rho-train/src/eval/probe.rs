//! The linear probe (docs/method.md §5.1): a frozen backbone and one linear layer on its pooled
//! features, SGD with Nesterov momentum, no weight decay, linear warm-up then cosine. In the
//! `code` BN mode the backbone runs in training mode every epoch (batch statistics; running
//! statistics re-estimated), as the released code does; in the `frozen` mode BN uses the
//! pre-trained statistics and the training features are computed once (and cached).

use burn::module::Module;
use burn::tensor::{backend::AutodiffBackend, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rho_data::VideoIndex;
use rho_model::{ClassificationHead, ResNet3d};

use super::common::{checked_loss, cross_entropy, sgd_rule, train_epochs};
use super::features::FeatureSet;
use super::recipe::EvalRecipe;
use super::{EvalError, Progress};
use crate::optim::GroupedOptimizer;

/// A new linear classifier (N(0, 0.01) weights, as PySlowFast's head).
pub fn new_head<B: AutodiffBackend>(
    dim: usize,
    classes: usize,
    dropout: f64,
    device: &B::Device,
) -> ClassificationHead<B> {
    ClassificationHead::new(dim, classes, dropout, device)
}

/// Trains a head on fixed features (every view of every training video is one example).
/// Returns the head and the mean loss of each epoch.
pub fn train_on_features<B: AutodiffBackend>(
    r: &EvalRecipe,
    train: &FeatureSet,
    classes: usize,
    device: &B::Device,
    progress: &mut Progress,
) -> Result<(ClassificationHead<B>, Vec<f64>), EvalError> {
    B::seed(device, r.seed);
    let mut head = new_head::<B>(train.dim, classes, r.dropout, device);
    let mut opt = GroupedOptimizer::new(&head, sgd_rule(r), 0.0);
    let examples = train.n * train.views;
    let iters = examples.div_ceil(r.batch);
    let epochs = r.epochs.ceil() as usize;
    let mut curve = Vec::new();
    for epoch in 0..epochs {
        let mut order: Vec<usize> = (0..examples).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
            r.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        ));
        let mut total = 0.0;
        for (it, chunk) in order.chunks(r.batch).enumerate() {
            let e = epoch as f64 + it as f64 / iters as f64;
            if e >= r.epochs {
                break;
            }
            let mut x = Vec::with_capacity(chunk.len() * train.dim);
            let mut y = Vec::with_capacity(chunk.len());
            for &j in chunk {
                x.extend_from_slice(train.get(j / train.views, j % train.views));
                y.push(train.labels[j / train.views]);
            }
            let x = Tensor::<B, 2>::from_data(TensorData::new(x, [chunk.len(), train.dim]), device);
            let loss = cross_entropy(head.forward(x), &y);
            total += checked_loss(&loss, &format!("probe epoch {epoch}, iteration {it}"))?;
            head = opt.step(r.lr(e), head, loss.backward());
        }
        curve.push(total / iters as f64);
        progress("probe", epoch + 1, epochs);
    }
    Ok((head, curve))
}

/// A probed backbone (its BN statistics re-estimated), the trained head and the loss per epoch.
pub type Probed<B> = (ResNet3d<B>, ClassificationHead<B>, Vec<f64>);

/// The `code` BN mode: each epoch decodes augmented clips and runs the backbone in training mode
/// (BN batch statistics, running statistics updated, weights frozen); only the head learns.
/// Returns the backbone with its re-estimated statistics, the head and the loss curve.
pub fn train_with_backbone<B: AutodiffBackend>(
    r: &EvalRecipe,
    backbone: ResNet3d<B>,
    index: &VideoIndex,
    classes: usize,
    device: &B::Device,
    progress: &mut Progress,
) -> Result<Probed<B>, EvalError> {
    B::seed(device, r.seed);
    let backbone = backbone.no_grad();
    let mut head = new_head::<B>(backbone.feature_dim(), classes, r.dropout, device);
    let mut opt = GroupedOptimizer::new(&head, sgd_rule(r), 0.0);
    let curve = train_epochs(r, index, device, progress, "probe", |x, y, lr, what| {
        let f = backbone.try_features(x)?.detach();
        let loss = cross_entropy(head.forward(f), y);
        let value = checked_loss(&loss, what)?;
        head = opt.step(lr, head.clone(), loss.backward());
        Ok(value)
    })?;
    backbone.sync_running_stats();
    Ok((backbone, head, curve))
}
