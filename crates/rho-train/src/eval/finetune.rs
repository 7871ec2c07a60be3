//! Fine-tuning (docs/method.md §5.2): the whole network with a new head after dropout (0.8 in
//! the paper), momentum SGD with the paper's step schedule or the configs' cosine, BN in
//! training mode.

use burn::tensor::backend::AutodiffBackend;
use rho_data::VideoIndex;
use rho_model::ResNet3d;

use super::common::{checked_loss, cross_entropy, sgd_rule, train_epochs};
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
    let curve = train_epochs(r, index, device, progress, "fine-tune", |x, y, lr, what| {
        let loss = cross_entropy(model.try_logits(x)?, y);
        let value = checked_loss(&loss, what)?;
        model = opt.step(lr, model.clone(), loss.backward());
        Ok(value)
    })?;
    model.sync_running_stats();
    Ok((model, curve))
}
