//! `train_step`: one optimiser step of pre-training, the unit the engine repeats and the
//! step-parity test (`tests/step_parity.rs`) checks against an independent PyTorch step.
//!
//! Order of operations (docs/method.md, "One step"): the method prepares the online network
//! (SwAV re-normalises its prototypes), then for each micro-batch runs its loss (moving the
//! momentum target once, on the first micro-batch, before the keys), back-propagates the loss
//! divided by the number of micro-batches, and splits the gradients into the two optimiser
//! groups; the guards run on the step's metrics; on several devices the gradients are averaged
//! over the ranks; finally both groups step at `lr`. A guard that fires stops the run before
//! the optimiser can apply a bad step. In f16 (a `loss_scale` in the plan) the loss is scaled
//! before back-propagation and the averaged gradients unscaled before the step, which is
//! skipped when any of them is not finite.

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::{backend::AutodiffBackend, Tensor, TensorData};
use rho_model::BatchStatsSync;
use rho_objectives::{Collectives, Objective, SingleDevice, SslNetwork, StepContext};

use crate::distributed::{CollectiveError, Transport};
use crate::engine::TrainError;
use crate::optim::GroupedOptimizer;

/// Where a step runs: the collectives of its device group and, on several devices, SyncBN and
/// the transport that averages the gradients.
pub struct StepEnv<'a, B: AutodiffBackend> {
    pub coll: &'a dyn Collectives<B>,
    pub bn_sync: Option<Arc<dyn BatchStatsSync>>,
    pub transport: Option<&'a dyn Transport<B::InnerBackend>>,
    /// Sees each optimiser group's final gradients (accumulated, averaged over ranks) just
    /// before the optimiser step (tests, gradient statistics).
    pub inspect_gradients: Option<&'a GradientInspector<'a, B>>,
}

/// A callback that sees the network and one optimiser group's gradients.
pub type GradientInspector<'a, B> = dyn Fn(&SslNetwork<B>, &GradientsParams) + 'a;

impl<B: AutodiffBackend> StepEnv<'static, B> {
    /// One device: identity collectives, no SyncBN, no gradient averaging.
    pub fn single_device() -> Self {
        Self {
            coll: &SingleDevice,
            bn_sync: None,
            transport: None,
            inspect_gradients: None,
        }
    }
}

/// One micro-batch: V clip tensors [b, 3, T, H, W] and the dataset index of each row's video.
pub struct MicroBatch<B: AutodiffBackend> {
    pub clips: Vec<Tensor<B, 5>>,
    pub videos: Vec<u64>,
}

/// Where in the run a step is, and what it does.
#[derive(Debug, Clone, Copy)]
pub struct StepPlan {
    /// The step's index (for messages and per-step randomness such as shuffle-BN).
    pub step: usize,
    /// Fractional epoch of the schedules (LR, target momentum, SwAV's prototype freeze).
    pub epoch: f64,
    pub total_epochs: f64,
    pub lr: f64,
    /// Compute the loss (and move the target, fill the queue) but do not change the online
    /// network: MoCo's queue warm-up.
    pub skip_optimizer: bool,
    /// The run's seed.
    pub seed: u64,
    /// f16 training: the loss is multiplied by this before back-propagation and the gradients
    /// divided by it; a step with non-finite gradients is skipped (crate::loss_scale).
    pub loss_scale: Option<f64>,
}

/// What a step leaves behind: the metrics averaged over micro-batches (and ranks).
pub struct StepOutcome<B: AutodiffBackend> {
    pub net: SslNetwork<B>,
    pub metrics: BTreeMap<&'static str, f64>,
    /// The scaled gradients overflowed and the optimiser step was skipped.
    pub overflowed: bool,
}

/// Runs one step. See the module documentation for the order of operations.
pub fn train_step<B: AutodiffBackend>(
    net: SslNetwork<B>,
    method: &mut dyn Objective<B>,
    opt: &mut GroupedOptimizer<SslNetwork<B>, B>,
    micro_batches: &[MicroBatch<B>],
    plan: StepPlan,
    env: &StepEnv<'_, B>,
) -> Result<StepOutcome<B>, TrainError> {
    let accum = micro_batches.len().max(1);
    let net = method.prepare(net);
    let mut metrics = BTreeMap::new();
    let (mut grads_bn, mut grads_rest) = (None, None);
    for (part, mb) in micro_batches.iter().enumerate() {
        let ctx = StepContext {
            epoch: plan.epoch,
            total_epochs: plan.total_epochs,
            update_target: part == 0,
            step: plan.step as u64,
            seed: plan.seed,
            videos: Some(&mb.videos),
        };
        let out = match &env.bn_sync {
            Some(sync) => rho_model::with_batch_stats_sync(sync.clone(), || {
                method.step(&net, &mb.clips, ctx, env.coll)
            }),
            None => method.step(&net, &mb.clips, ctx, env.coll),
        }?;
        for (k, val) in &out.metrics {
            *metrics.entry(*k).or_insert(0.0) += val / accum as f64;
        }
        // × 1/accum, not ÷: docs/architecture.md "Exact f64 gradients".
        let loss = out.loss.mul_scalar((accum as f64).recip());
        let grads = match plan.loss_scale {
            Some(scale) => loss.mul_scalar(scale).backward(),
            None => loss.backward(),
        };
        if !plan.skip_optimizer {
            let (gb, gr) = opt.split(&net, grads);
            grads_bn = Some(accumulate(&net, grads_bn, gb));
            grads_rest = Some(accumulate(&net, grads_rest, gr));
        }
    }
    let device = micro_batches
        .first()
        .and_then(|m| m.clips.first())
        .map(|c| c.device())
        .ok_or_else(|| TrainError::Config("a step needs at least one micro-batch".into()))?;
    if let Some(t) = env.transport {
        metrics = average_metrics::<B>(metrics, t, &device)?;
    }
    guard(&metrics, &plan)?;
    let (Some(mut gb), Some(mut gr)) = (grads_bn, grads_rest) else {
        return Ok(StepOutcome {
            net,
            metrics,
            overflowed: false,
        });
    };
    let (mut bn, mut rest) = (gb.grads(), gr.grads());
    if let Some(t) = env.transport {
        bn = crate::distributed::average_gradients(&net, bn, t, "gradients (BatchNorm)")?;
        rest = crate::distributed::average_gradients(&net, rest, t, "gradients")?;
    }
    if let Some(scale) = plan.loss_scale {
        let ([b, r], finite) = crate::loss_scale::unscale(&net, [bn, rest], 1.0 / scale);
        if !finite {
            return Ok(StepOutcome {
                net,
                metrics,
                overflowed: true,
            });
        }
        (bn, rest) = (b, r);
    }
    if let Some(inspect) = env.inspect_gradients {
        inspect(&net, &bn);
        inspect(&net, &rest);
    }
    let net = opt.step_split(plan.lr, net, bn, rest);
    Ok(StepOutcome {
        net,
        metrics,
        overflowed: false,
    })
}

/// Stops the run on a non-finite loss or a collapsed representation, before the optimiser
/// applies the step (the last checkpoint stays the last good state).
fn guard(metrics: &BTreeMap<&'static str, f64>, plan: &StepPlan) -> Result<(), TrainError> {
    let (step, epoch) = (plan.step, plan.epoch);
    let loss = metrics.get("loss").copied().unwrap_or(f64::NAN);
    if !loss.is_finite() {
        return Err(TrainError::Diverged { step, epoch, loss });
    }
    if let Some(reason) = rho_objectives::diagnostics::collapse(metrics) {
        return Err(TrainError::Collapsed {
            step,
            epoch,
            reason,
        });
    }
    Ok(())
}

fn accumulate<B: AutodiffBackend>(
    net: &SslNetwork<B>,
    acc: Option<GradientsAccumulator<SslNetwork<B>>>,
    grads: GradientsParams,
) -> GradientsAccumulator<SslNetwork<B>> {
    let mut acc = acc.unwrap_or_default();
    acc.accumulate(net, grads);
    acc
}

/// The ranks' metrics averaged (one small all-reduce; every rank then takes the same decisions,
/// e.g. stopping on a NaN loss together).
fn average_metrics<B: AutodiffBackend>(
    metrics: BTreeMap<&'static str, f64>,
    t: &dyn Transport<B::InnerBackend>,
    device: &B::Device,
) -> Result<BTreeMap<&'static str, f64>, TrainError> {
    let values: Vec<f32> = metrics.values().map(|v| *v as f32).collect();
    let n = values.len();
    let sum = t.all_reduce_sum(
        Tensor::from_data(TensorData::new(values, [n]), device),
        "step metrics",
    )?;
    let sum = sum
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| CollectiveError::Setup(format!("step metrics: {e:?}")))?;
    let w = t.world_size() as f64;
    Ok(metrics
        .keys()
        .zip(sum)
        .map(|(k, v)| (*k, v as f64 / w))
        .collect())
}
