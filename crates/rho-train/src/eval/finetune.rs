//! Fine-tuning (spec §5.2): the whole network with a new head after dropout (0.8 in the paper),
//! momentum SGD with the paper's step schedule or the configs' cosine, BN in training mode.

use burn::tensor::{backend::AutodiffBackend, Tensor, TensorData};
use rho_data::{VideoIndex, VideoLoader};
use rho_model::ResNet3d;

use super::common::{checked_loss, cross_entropy, sgd_rule, train_loader};
use super::features::labels_of_batch;
use super::probe::new_head;
use super::recipe::EvalRecipe;
use super::{EvalError, Progress};
use crate::optim::GroupedOptimizer;

/// Trains `backbone` plus a new head on `index`; returns the network (head attached) and the
/// loss of each epoch.
pub fn finetune<B: AutodiffBackend>(
    r: &EvalRecipe,
    backbone: ResNet3d<B>,
    index: &VideoIndex,
    classes: usize,
    device: &B::Device,
    progress: &mut Progress,
) -> Result<(ResNet3d<B>, Vec<f64>), EvalError> {
    B::seed(device, r.seed);
    let mut model = backbone;
    model.head = Some(new_head::<B>(
        model.feature_dim(),
        classes,
        r.dropout,
        device,
    ));
    let mut opt = GroupedOptimizer::new(&model, sgd_rule(r), 0.0);
    let mut loader = VideoLoader::new(index.clone(), train_loader(r))?;
    let iters = loader.batches_per_epoch();
    let epochs = r.epochs.ceil() as usize;
    let mut curve = Vec::new();
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
            let y = labels_of_batch(&batch)?;
            let x = Tensor::<B, 5>::from_data(
                TensorData::new(batch.clips, [b * v, c, t, h, w]),
                device,
            );
            let loss = cross_entropy(model.try_logits(x)?, &y);
            total += checked_loss(&loss, &format!("fine-tuning epoch {epoch}, iteration {it}"))?;
            model = opt.step(r.lr(e), model, loss.backward());
        }
        curve.push(total / iters.max(1) as f64);
        progress("fine-tune", epoch + 1, epochs);
    }
    model.sync_running_stats();
    Ok((model, curve))
}
