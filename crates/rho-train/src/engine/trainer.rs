//! `Trainer`: a pre-training run built once (checks, loader, networks, optimiser, resume) and
//! then stepped: [`Trainer::run`] repeats [`train_step`] over epochs, checkpoints, and calls
//! the caller's [`Hooks`].

use std::time::Instant;

use burn::module::ParamId;
use burn::tensor::backend::AutodiffBackend;
use rho_data::{Batch, LoaderPosition, VideoLoader};
use rho_objectives::{Objective, SslNetwork};

use super::data::{index_signature, load_index, loader_config, micro_batches};
use super::data_parallel::{DataParallel, RankContext};
use super::state::{restore_networks, restore_optimizer, save, TrainState};
use super::{checks, Hooks, RunOptions, StepLog, TrainError};
use crate::loss_scale::LossScaler;
use crate::optim::{split_batch_norm_params, GroupedOptimizer, SgdRule};
use crate::recipe::{OptimizerKind, Recipe};
use crate::schedule::CosineSchedule;
use crate::step::{train_step, StepPlan};

/// Serialises network initialisation between the in-process ranks: a seeded init on a shared
/// device RNG must not interleave, or rank 0 would not get the single-process weights.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Trainer<B: AutodiffBackend> {
    recipe: Recipe,
    device: B::Device,
    opts: RunOptions,
    dp: DataParallel<B>,
    loader: VideoLoader,
    model: Model<B>,
    clock: Clock,
}

/// What a step changes: the networks and the optimiser (`net` is taken while a step runs).
struct Model<B: AutodiffBackend> {
    net: Option<SslNetwork<B>>,
    method: BoxedObjective<B>,
    opt: GroupedOptimizer<SslNetwork<B>, B>,
    /// f16 runs only.
    scaler: Option<LossScaler>,
}

/// When a step began waiting for its batch, and how long it waited.
struct Waited {
    since: Instant,
    data_wait_s: f64,
}

/// Where the run is, and the schedules that depend on it.
struct Clock {
    step: usize,
    total: usize,
    /// MoCo's queue warm-up: steps before the first optimiser step.
    warmup_steps: usize,
    batches_per_epoch: usize,
    schedule: CosineSchedule,
}

impl<B: AutodiffBackend> Trainer<B> {
    /// Checks the run, builds it, and resumes it when `opts.resume` names a checkpoint; `rank`
    /// places it in a data-parallel run (`None`: one device).
    pub fn new(
        recipe: &Recipe,
        device: &B::Device,
        opts: RunOptions,
        rank: Option<&RankContext<B>>,
    ) -> Result<Self, TrainError> {
        let dp = DataParallel::new(rank, recipe.model.sync_bn)?;
        recipe
            .micro_batch(dp.world(), dp.sync_bn_group())
            .map_err(TrainError::Config)?;
        let index = load_index(recipe)?;
        checks::preflight(recipe, &index)?;
        if let Some(limit) = opts.memory_limit {
            checks::memory_fits(recipe, dp.world(), limit)?;
        }
        let mut lcfg = loader_config(recipe);
        dp.shard(&mut lcfg);
        let signature = index_signature(&index);
        let mut loader = VideoLoader::new(index, lcfg)?;
        let (mut net, mut method) = build_networks(recipe, device)?;
        let mut step = 0;
        let resumed = match &opts.resume {
            Some(p) => Some((p, crate::checkpoint::Checkpoint::read(p)?)),
            None => None,
        };
        if let Some((p, ck)) = &resumed {
            checks::resume_changes(&ck.meta.recipe, recipe, opts.allow_recipe_change)?;
            net = restore_networks(ck, p, net, &mut method, device)?;
            loader.set_position(ck.meta.position);
            step = ck.meta.step;
        }
        let start = (step, loader.position());
        let net = dp.start_together(net, method.as_mut(), start, signature, device)?;
        let mut opt = GroupedOptimizer::new(&net, sgd_rule(recipe), recipe.optim.bn_weight_decay)
            .with_lr_multiplier(
                &predictor_param_ids(&net),
                recipe.optim.predictor_lr_multiplier,
            );
        let mut scaler = recipe.precision.needs_loss_scale().then(|| {
            LossScaler::new(
                recipe.optim.loss_scale,
                recipe.optim.loss_scale_growth_interval,
            )
        });
        if let Some((p, ck)) = &resumed {
            opt = restore_optimizer(ck, p, opt, device)?;
            scaler = scaler.map(|s| ck.meta.loss_scale.unwrap_or(s));
        }
        let clips_per_step = recipe.batch * recipe.data.rho.max(2);
        let warmup_steps = method.warmup_steps(clips_per_step);
        let clock = Clock::new(
            recipe,
            &opts,
            step,
            loader.batches_per_epoch(),
            warmup_steps,
        );
        Ok(Self {
            recipe: recipe.clone(),
            device: device.clone(),
            opts,
            dp,
            loader,
            model: Model {
                net: Some(net),
                method,
                opt,
                scaler,
            },
            clock,
        })
    }

    /// Steps completed so far (resumed ones included), and the run's total.
    pub fn progress(&self) -> (usize, usize) {
        (self.clock.step, self.clock.total)
    }

    /// Trains to the end (the recipe's epochs or `max_steps`) and returns the online network.
    pub fn run(mut self, hooks: &mut impl Hooks<B>) -> Result<SslNetwork<B>, TrainError> {
        while self.clock.step < self.clock.total {
            self.run_epoch(hooks)?;
        }
        self.model.net.take().ok_or_else(lost_network)
    }

    /// One optimiser step on `batch` (a batch of this trainer's loader, or one like it).
    pub fn step(&mut self, batch: &Batch) -> Result<StepLog, TrainError> {
        let (recipe, device) = (&self.recipe, &self.device);
        let waited = Waited {
            since: Instant::now(),
            data_wait_s: 0.0,
        };
        self.model
            .step(batch, &mut self.clock, &self.dp, recipe, device, waited)
    }

    /// The rest of the loader's current epoch (or up to the run's end), then the epoch hook.
    fn run_epoch(&mut self, hooks: &mut impl Hooks<B>) -> Result<(), TrainError> {
        let epoch0 = self.loader.position().epoch;
        let iters = self.clock.batches_per_epoch;
        let mut batches = self.loader.epoch();
        let mut epoch_done = true;
        loop {
            let waited = Instant::now();
            let Some(batch) = batches.next() else { break };
            let batch = batch?;
            let waited = Waited {
                since: waited,
                data_wait_s: waited.elapsed().as_secs_f64(),
            };
            let (m, c, dp) = (&mut self.model, &mut self.clock, &self.dp);
            let log = m.step(&batch, c, dp, &self.recipe, &self.device, waited)?;
            if dp.is_lead() {
                hooks.on_step(&log);
            }
            let next = next_position(&batch, epoch0, iters);
            if dp.is_lead() && checkpoint_due(&self.opts, c.step) {
                let state = m.state()?;
                save(&self.recipe, state, c.step, next, self.opts.keep)?;
            }
            if c.step >= c.total {
                epoch_done = batch.position.cursor + 1 >= iters;
                break;
            }
        }
        drop(batches);
        if epoch_done {
            if self.dp.is_lead() {
                let net = self.model.net.as_ref().ok_or_else(lost_network)?;
                hooks.on_epoch(epoch0 + 1, net)?;
            }
            self.dp.end_of_epoch(epoch0 + 1, &self.device)?;
        }
        Ok(())
    }
}

impl<B: AutodiffBackend> Model<B> {
    /// One step; advances `clock`.
    fn step(
        &mut self,
        batch: &Batch,
        clock: &mut Clock,
        dp: &DataParallel<B>,
        recipe: &Recipe,
        device: &B::Device,
        waited: Waited,
    ) -> Result<StepLog, TrainError> {
        let [b, v, ..] = batch.shape;
        let mut plan = clock.plan(recipe);
        plan.loss_scale = self.scaler.map(|s| s.scale);
        let micro = micro_batches::<B>(batch, recipe.optim.accumulation, device);
        let net = self.net.take().ok_or_else(lost_network)?;
        let env = dp.step_env();
        let out = train_step(net, self.method.as_mut(), &mut self.opt, &micro, plan, &env)?;
        self.net = Some(out.net);
        let mut metrics = out.metrics;
        // MoCo's queue warm-up steps take no optimiser step, so they are not good steps either.
        if let Some(s) = self.scaler.as_mut().filter(|_| !plan.skip_optimizer) {
            metrics.insert("loss_scale", s.scale);
            metrics.insert("overflow", if out.overflowed { 1.0 } else { 0.0 });
            s.update(out.overflowed);
        }
        clock.step += 1;
        Ok(StepLog {
            step: plan.step,
            epoch: plan.epoch,
            lr: plan.lr,
            skipped: plan.skip_optimizer || out.overflowed,
            metrics,
            data_wait_s: waited.data_wait_s,
            step_s: waited.since.elapsed().as_secs_f64(),
            clips: b * v * dp.world(),
            total_steps: clock.total,
        })
    }

    fn state(&self) -> Result<TrainState<'_, B>, TrainError> {
        Ok(TrainState {
            net: self.net.as_ref().ok_or_else(lost_network)?,
            method: self.method.as_ref(),
            opt: &self.opt,
            loss_scale: self.scaler,
        })
    }
}

impl Clock {
    fn new(
        recipe: &Recipe,
        opts: &RunOptions,
        step: usize,
        batches_per_epoch: usize,
        warmup_steps: usize,
    ) -> Self {
        let epochs = (recipe.epochs * batches_per_epoch as f64).ceil() as usize;
        Self {
            step,
            total: opts.max_steps.unwrap_or(warmup_steps + epochs),
            warmup_steps,
            batches_per_epoch,
            schedule: recipe.schedule(),
        }
    }

    /// The next step's plan. The schedules (LR, target momentum) count optimiser steps, so
    /// MoCo's queue warm-up does not eat into the LR warm-up.
    fn plan(&self, recipe: &Recipe) -> StepPlan {
        let epoch =
            self.step.saturating_sub(self.warmup_steps) as f64 / self.batches_per_epoch as f64;
        StepPlan {
            step: self.step,
            epoch,
            total_epochs: recipe.epochs,
            lr: self.schedule.lr(epoch),
            skip_optimizer: self.step < self.warmup_steps,
            seed: recipe.seed,
            loss_scale: None,
        }
    }
}

/// A method with its state, as the trainer holds it.
pub type BoxedObjective<B> = Box<dyn Objective<B>>;

/// The online network and the method's state, seeded by the recipe: the network every run of
/// the recipe starts from (also what `examples/init_network.rs` writes for the PyTorch reference).
pub fn build_networks<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
) -> Result<(SslNetwork<B>, BoxedObjective<B>), TrainError> {
    let mcfg = recipe.method_config();
    let _init = INIT.lock().unwrap_or_else(|e| e.into_inner());
    B::seed(device, recipe.seed);
    let backbone = rho_model::ResNet3dConfig::preset(&recipe.model.arch)?.try_init::<B>(device)?;
    let net = mcfg
        .build_network(backbone, device)
        .with_precision(recipe.precision);
    let method = rho_objectives::registry::build(mcfg, &net, device)?;
    Ok((net, method))
}

/// The ids of the BYOL predictor's trainable tensors (none for the other methods).
fn predictor_param_ids<B: AutodiffBackend>(net: &SslNetwork<B>) -> Vec<ParamId> {
    net.predictor
        .as_ref()
        .map(|p| {
            let (bn, rest) = split_batch_norm_params::<B, _>(p);
            [bn, rest].concat()
        })
        .unwrap_or_default()
}

fn sgd_rule(recipe: &Recipe) -> SgdRule {
    let o = &recipe.optim;
    SgdRule {
        momentum: o.momentum,
        nesterov: o.nesterov,
        weight_decay: o.weight_decay,
        lars_trust: (o.optimizer == OptimizerKind::Lars).then_some(o.lars_trust),
    }
}

fn checkpoint_due(opts: &RunOptions, step: usize) -> bool {
    opts.checkpoint_every
        .is_some_and(|every| every > 0 && step.is_multiple_of(every))
}

/// The position of the batch after `batch`: what a resumed run must start from.
fn next_position(batch: &Batch, epoch: u64, batches_per_epoch: usize) -> LoaderPosition {
    let cursor = batch.position.cursor + 1;
    if cursor >= batches_per_epoch {
        LoaderPosition {
            epoch: epoch + 1,
            cursor: 0,
        }
    } else {
        LoaderPosition { epoch, cursor }
    }
}

fn lost_network() -> TrainError {
    TrainError::Config("the trainer lost its network after a failed step; build a new one".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::{backend::Backend, Tensor};

    type B = Autodiff<Flex>;

    fn recipe(method: &str) -> Recipe {
        let path = format!(
            "{}/../../configs/demo/{method}.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        Recipe::load(std::path::Path::new(&path), &[]).expect("the demo recipe")
    }

    /// The multiplier groups get the BYOL predictor's tensors, all of them and nothing else.
    #[test]
    fn the_predictor_ids_are_the_predictors_tensors() {
        let (net, _) = build_networks::<B>(&recipe("byol"), &Default::default()).unwrap();
        let ids = predictor_param_ids(&net);
        assert!(net.predictor.is_some(), "BYOL has a predictor");
        // Two Linear layers (weight; the last with a bias) and one BN (γ, β), no running stats.
        assert_eq!(ids.len(), 5);
        let c = recipe("byol").method_config();
        let (d, h) = (c.proj_dim, c.predictor_hidden);
        let mut n = 0;
        struct Count<'a>(&'a [ParamId], &'a mut usize);
        impl<B: Backend> ModuleVisitor<B> for Count<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                if self.0.contains(&p.id) {
                    *self.1 += p.val().shape().num_elements();
                }
            }
        }
        net.visit(&mut Count(&ids, &mut n));
        assert_eq!(n, d * h + h * d + d + 2 * h);
        let (simclr, _) = build_networks::<B>(&recipe("simclr"), &Default::default()).unwrap();
        assert!(predictor_param_ids(&simclr).is_empty());
    }
}
