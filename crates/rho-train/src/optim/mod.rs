//! The optimiser of the released code (docs/method.md §4.2): momentum SGD with PyTorch semantics
//! (dampening 0, optional Nesterov) and LARS, with two parameter groups. BatchNorm γ/β get
//! `bn_weight_decay` and are never LARS-scaled; every other parameter gets `weight_decay` and,
//! with LARS, the trust ratio when it has more than one dimension (1-D biases in a LARS group get
//! neither scaling nor decay). A part of the network (ρBYOL's predictor) can run at a multiple of
//! the learning rate in groups of its own. Burn 0.21 has no parameter groups, so each group has
//! its own optimiser over its own gradients. On the CPU backends the update of each tensor is one fused
//! parallel pass (`host_update`).

use burn::module::{AutodiffModule, ModuleVisitor, Param, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer, SimpleOptimizer};
use burn::record::Record;
use burn::tensor::{backend::AutodiffBackend, backend::Backend, DType, Tensor};

mod host_update;

/// One group's update rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdRule {
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// LARS trust coefficient η; `None` = plain momentum SGD.
    pub lars_trust: Option<f64>,
}

/// The momentum buffer of one tensor.
#[derive(Record, Clone)]
pub struct MomentumState<B: Backend, const D: usize> {
    pub velocity: Tensor<B, D>,
}

impl SgdRule {
    /// The rule as tensor ops, on any backend: the definition that the host update
    /// ([`host_update`]) reproduces element for element.
    pub fn step_composed<B: Backend, const D: usize>(
        &self,
        lr: f64,
        w: Tensor<B, D>,
        g: Tensor<B, D>,
        state: Option<MomentumState<B, D>>,
    ) -> (Tensor<B, D>, MomentumState<B, D>) {
        let wd = self.weight_decay;
        let g = match self.lars_trust {
            // λ = η‖w‖ / (‖g‖ + wd‖w‖ + 1e-8); g ← (g + wd·w)·λ; unchanged when ‖w‖ or ‖g‖ is 0.
            Some(eta) if D > 1 => {
                let wn = w.clone().square().sum().sqrt();
                let gn = g.clone().square().sum().sqrt();
                let lambda = wn.clone().mul_scalar(eta)
                    / (gn.clone() + wn.clone().mul_scalar(wd)).add_scalar(1e-8);
                let active = wn.greater_elem(0.0).bool_and(gn.greater_elem(0.0));
                let lambda = Tensor::<B, 1>::ones([1], &w.device())
                    .mask_where(active.clone(), lambda)
                    .reshape([1; D]);
                let decay = Tensor::<B, 1>::zeros([1], &w.device())
                    .mask_fill(active, wd)
                    .reshape([1; D]);
                (g + w.clone() * decay) * lambda
            }
            Some(_) => g,
            None if wd != 0.0 => g + w.clone().mul_scalar(wd),
            None => g,
        };
        let mu = self.momentum;
        let velocity = match state {
            Some(s) if mu != 0.0 => s.velocity.mul_scalar(mu) + g.clone(),
            _ => g.clone(), // PyTorch: the first step's buffer is the gradient
        };
        let update = if self.nesterov {
            g + velocity.clone().mul_scalar(mu)
        } else {
            velocity.clone()
        };
        (w - update.mul_scalar(lr), MomentumState { velocity })
    }
}

impl<B: Backend> SimpleOptimizer<B> for SgdRule {
    type State<const D: usize> = MomentumState<B, D>;

    /// On the CPU backends one fused parallel pass ([`host_update`]), elsewhere the composed ops.
    fn step<const D: usize>(
        &self,
        lr: f64,
        w: Tensor<B, D>,
        g: Tensor<B, D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<B, D>, Option<Self::State<D>>) {
        let velocity = state.map(|s| s.velocity);
        let (w, velocity) = match host_update::host_dtype(&w, &g, velocity.as_ref()) {
            Some(DType::F32) => host_update::step::<B, f32, D>(self, lr, w, g, velocity),
            Some(DType::F64) => host_update::step::<B, f64, D>(self, lr, w, g, velocity),
            _ => {
                let state = velocity.map(|velocity| MomentumState { velocity });
                let (w, s) = self.step_composed(lr, w, g, state);
                (w, s.velocity)
            }
        };
        (w, Some(MomentumState { velocity }))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &B::Device) -> Self::State<D> {
        MomentumState {
            velocity: state.velocity.to_device(device),
        }
    }
}

/// Parameter ids of BatchNorm scales and shifts (`…bn.gamma`, `…bn.beta`, `norms.N.gamma`), and of
/// everything else.
pub fn split_batch_norm_params<B: Backend, M: burn::module::Module<B>>(
    module: &M,
) -> (Vec<ParamId>, Vec<ParamId>) {
    struct Split {
        path: Vec<String>,
        bn: Vec<ParamId>,
        rest: Vec<ParamId>,
    }
    impl<B: Backend> ModuleVisitor<B> for Split {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let leaf = self.path.last().map(String::as_str);
            match leaf {
                Some("running_mean" | "running_var") => {}
                Some("gamma" | "beta") => self.bn.push(p.id),
                _ => self.rest.push(p.id),
            }
        }
    }
    let mut s = Split {
        path: Vec::new(),
        bn: Vec::new(),
        rest: Vec::new(),
    };
    module.visit(&mut s);
    (s.bn, s.rest)
}

/// One parameter group: its ids, its rule and learning-rate multiplier, its optimiser.
struct Group<M: AutodiffModule<B>, B: AutodiffBackend> {
    ids: Vec<ParamId>,
    /// BatchNorm γ/β: their gradients come in the BN half of a split, their state goes to the BN
    /// blob of a checkpoint.
    batch_norm: bool,
    rule: SgdRule,
    lr_multiplier: f64,
    optim: OptimizerAdaptor<SgdRule, M, B>,
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> Group<M, B> {
    fn new(ids: Vec<ParamId>, batch_norm: bool, rule: SgdRule, lr_multiplier: f64) -> Self {
        Self {
            ids,
            batch_norm,
            rule,
            lr_multiplier,
            optim: OptimizerAdaptor::from(rule),
        }
    }
}

type GroupRecord<M, B> = <OptimizerAdaptor<SgdRule, M, B> as Optimizer<M, B>>::Record;

/// The parameter groups of one network, one step. BatchNorm γ/β and the other parameters form
/// two groups; [`with_lr_multiplier`](Self::with_lr_multiplier) moves a part of the network (the
/// BYOL predictor) into groups of their own at a multiple of the learning rate.
pub struct GroupedOptimizer<M: AutodiffModule<B>, B: AutodiffBackend> {
    groups: Vec<Group<M, B>>,
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> GroupedOptimizer<M, B> {
    /// `rule` for ordinary parameters; BN parameters get the same momentum with `bn_weight_decay`
    /// and no LARS.
    pub fn new(module: &M, rule: SgdRule, bn_weight_decay: f64) -> Self {
        let (bn_ids, rest_ids) = split_batch_norm_params::<B, M>(module);
        let bn_rule = SgdRule {
            weight_decay: bn_weight_decay,
            lars_trust: None,
            ..rule
        };
        Self {
            groups: vec![
                Group::new(bn_ids, true, bn_rule, 1.0),
                Group::new(rest_ids, false, rule, 1.0),
            ],
        }
    }

    /// Moves the parameters `ids` out of their groups into groups of their own (BN and the rest
    /// apart, with the same rules) whose learning rate is `multiplier` × the step's. Call it
    /// before the first step.
    pub fn with_lr_multiplier(mut self, ids: &[ParamId], multiplier: f64) -> Self {
        if ids.is_empty() || multiplier == 1.0 {
            return self;
        }
        let mut moved = Vec::new();
        for g in &mut self.groups {
            let (taken, kept): (Vec<_>, Vec<_>) =
                g.ids.iter().copied().partition(|id| ids.contains(id));
            g.ids = kept;
            if !taken.is_empty() {
                let mult = g.lr_multiplier * multiplier;
                moved.push(Group::new(taken, g.batch_norm, g.rule, mult));
            }
        }
        self.groups.extend(moved);
        self
    }

    /// The learning-rate multipliers of the groups that hold `id` (tests).
    pub fn lr_multiplier(&self, id: ParamId) -> Option<f64> {
        self.groups
            .iter()
            .find(|g| g.ids.contains(&id))
            .map(|g| g.lr_multiplier)
    }

    /// The states as bytes (Burn named-MessagePack records), for checkpoints: one blob for the
    /// BatchNorm groups and one for the others, keyed by parameter id, whatever the multipliers.
    pub fn to_bytes(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
        let rec = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let merged = |bn: bool| {
            let mut all = GroupRecord::<M, B>::new();
            for g in self.groups.iter().filter(|g| g.batch_norm == bn) {
                all.extend(g.optim.to_record());
            }
            Recorder::<B>::record(&rec, all, ()).map_err(|e| e.to_string())
        };
        Ok((merged(true)?, merged(false)?))
    }

    /// Restores the states written by [`to_bytes`](Self::to_bytes). The module must carry the
    /// parameter ids of the checkpoint (load its record first).
    pub fn load_bytes(
        mut self,
        bn: &[u8],
        rest: &[u8],
        device: &B::Device,
    ) -> Result<Self, String> {
        use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder};
        let rec = NamedMpkBytesRecorder::<FullPrecisionSettings>::new();
        let load = |bytes: &[u8]| -> Result<GroupRecord<M, B>, String> {
            Recorder::<B>::load(&rec, bytes.to_vec(), device).map_err(|e| e.to_string())
        };
        let (mut bn, mut rest) = (load(bn)?, load(rest)?);
        for g in &mut self.groups {
            let source = if g.batch_norm { &mut bn } else { &mut rest };
            let mine: GroupRecord<M, B> = g
                .ids
                .iter()
                .filter_map(|id| source.remove(id).map(|r| (*id, r)))
                .collect();
            let fresh = OptimizerAdaptor::from(g.rule);
            g.optim = std::mem::replace(&mut g.optim, fresh).load_record(mine);
        }
        Ok(self)
    }

    /// The momentum buffer of parameter `id` (None before its first step), for tests and
    /// diagnostics.
    pub fn velocity<const D: usize>(&self, id: ParamId) -> Option<Tensor<B::InnerBackend, D>> {
        let rec = self
            .groups
            .iter()
            .find_map(|g| g.optim.to_record().remove(&id))?;
        Some(rec.into_state::<D>().velocity)
    }

    /// Sets the momentum buffer of parameter `id` (tests that restart from a recorded state).
    pub fn set_velocity<const D: usize>(
        &mut self,
        id: ParamId,
        velocity: Tensor<B::InnerBackend, D>,
    ) {
        use burn::optim::record::AdaptorRecord;
        let Some(g) = self.groups.iter_mut().find(|g| g.ids.contains(&id)) else {
            return;
        };
        let state = AdaptorRecord::from_state::<D>(MomentumState { velocity });
        let mut rec = g.optim.to_record();
        rec.insert(id, state);
        let fresh = OptimizerAdaptor::from(g.rule);
        g.optim = std::mem::replace(&mut g.optim, fresh).load_record(rec);
    }

    /// One step at learning rate `lr` with the gradients of a backward pass.
    pub fn step(&mut self, lr: f64, module: M, grads: B::Gradients) -> M {
        let (bn, rest) = self.split(&module, grads);
        self.step_split(lr, module, bn, rest)
    }

    /// The gradients of a backward pass in two halves, BatchNorm γ/β and the rest (to accumulate
    /// them over micro-batches, average them across devices, unscale them).
    pub fn split(&self, module: &M, grads: B::Gradients) -> (GradientsParams, GradientsParams) {
        let mut grads = grads;
        let ids = |bn: bool| -> Vec<ParamId> {
            self.groups
                .iter()
                .filter(|g| g.batch_norm == bn)
                .flat_map(|g| g.ids.iter().copied())
                .collect()
        };
        let bn = GradientsParams::from_params(&mut grads, module, &ids(true));
        let rest = GradientsParams::from_params(&mut grads, module, &ids(false));
        (bn, rest)
    }

    /// One step with gradients already split into the two halves of [`split`](Self::split).
    pub fn step_split(
        &mut self,
        lr: f64,
        module: M,
        bn: GradientsParams,
        rest: GradientsParams,
    ) -> M {
        let (mut bn, mut rest) = (bn, rest);
        let mut module = module;
        for g in &mut self.groups {
            let source = if g.batch_norm { &mut bn } else { &mut rest };
            let mine = take_gradients::<B, M>(&module, source, &g.ids);
            module = g.optim.step(lr * g.lr_multiplier, module, mine);
        }
        module
    }
}

/// The gradients of parameters `ids`, moved out of `grads`.
fn take_gradients<B: AutodiffBackend, M: AutodiffModule<B>>(
    module: &M,
    grads: &mut GradientsParams,
    ids: &[ParamId],
) -> GradientsParams {
    struct Take<'a, B: AutodiffBackend> {
        ids: &'a [ParamId],
        from: &'a mut GradientsParams,
        to: GradientsParams,
        _b: std::marker::PhantomData<B>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_, B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            if self.ids.contains(&p.id) {
                if let Some(g) = self.from.remove::<B::InnerBackend, D>(p.id) {
                    self.to.register::<B::InnerBackend, D>(p.id, g);
                }
            }
        }
    }
    let mut take = Take::<B> {
        ids,
        from: grads,
        to: GradientsParams::new(),
        _b: std::marker::PhantomData,
    };
    module.visit(&mut take);
    take.to
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::module::Module;
    use burn::tensor::TensorData;

    type B = Flex;

    fn t2(v: &[f32]) -> Tensor<B, 2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [2, 2]), &Default::default())
    }

    fn vals(t: Tensor<B, 2>) -> Vec<f32> {
        t.into_data().to_vec::<f32>().unwrap()
    }

    /// PyTorch SGD(momentum=0.9, nesterov=True, weight_decay=0.1), two steps, by hand:
    /// g' = g + wd·w; buf = μ·buf + g'; w ← w − lr·(g' + μ·buf).
    #[test]
    fn nesterov_sgd_matches_pytorch_semantics() {
        let rule = SgdRule {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.1,
            lars_trust: None,
        };
        let (w0, g) = ([1.0f32, -2.0, 0.5, 0.0], [0.3f32, 0.1, -0.2, 1.0]);
        let (w1, s) = SimpleOptimizer::<B>::step(&rule, 0.5, t2(&w0), t2(&g), None);
        let (w2, _) = SimpleOptimizer::<B>::step(&rule, 0.5, w1.clone(), t2(&g), s);
        let (mut w, mut buf) = (w0.map(f64::from), [0f64; 4]);
        for step in 0..2 {
            for i in 0..4 {
                let gp = g[i] as f64 + 0.1 * w[i];
                buf[i] = if step == 0 { gp } else { 0.9 * buf[i] + gp };
                w[i] -= 0.5 * (gp + 0.9 * buf[i]);
            }
            let got = vals(if step == 0 { w1.clone() } else { w2.clone() });
            for i in 0..4 {
                assert!(
                    (got[i] as f64 - w[i]).abs() < 1e-5,
                    "step {step} [{i}]: {} vs {}",
                    got[i],
                    w[i]
                );
            }
        }
    }

    /// LARS: λ = η‖w‖/(‖g‖ + wd‖w‖ + 1e-8), g ← (g + wd·w)·λ, then momentum SGD.
    #[test]
    fn lars_trust_ratio() {
        let rule = SgdRule {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 1e-2,
            lars_trust: Some(0.001),
        };
        let (w0, g) = ([3.0f32, 4.0, 0.0, 0.0], [0.6f32, 0.8, 0.0, 0.0]);
        let (w1, _) = SimpleOptimizer::<B>::step(&rule, 4.8, t2(&w0), t2(&g), None);
        let (wn, gn) = (5.0f64, 1.0f64);
        let lambda = 0.001 * wn / (gn + 1e-2 * wn + 1e-8);
        let got = vals(w1);
        for i in 0..4 {
            let gi = (g[i] as f64 + 1e-2 * w0[i] as f64) * lambda;
            assert!((got[i] as f64 - (w0[i] as f64 - 4.8 * gi)).abs() < 1e-6);
        }
        // A zero weight tensor is left to plain SGD (no scaling, no decay).
        let (w1, _) = SimpleOptimizer::<B>::step(&rule, 1.0, t2(&[0.0; 4]), t2(&g), None);
        let got = vals(w1);
        assert!((got[0] + 0.6).abs() < 1e-6);
        // 1-D tensors in a LARS group: neither LARS nor weight decay.
        let b = Tensor::<B, 1>::from_floats([2.0, -1.0], &Default::default());
        let gb = Tensor::<B, 1>::from_floats([0.5, 0.5], &Default::default());
        let (b1, _) = SimpleOptimizer::<B>::step(&rule, 0.1, b, gb, None);
        let got = b1.into_data().to_vec::<f32>().unwrap();
        assert!((got[0] - 1.95).abs() < 1e-6 && (got[1] + 1.05).abs() < 1e-6);
    }

    /// The rules the recipes use: plain momentum SGD, Nesterov, no momentum, LARS.
    fn rules() -> Vec<SgdRule> {
        let r = |momentum, nesterov, weight_decay, lars_trust| SgdRule {
            momentum,
            nesterov,
            weight_decay,
            lars_trust,
        };
        vec![
            r(0.9, false, 1e-4, None),
            r(0.9, true, 0.1, None),
            r(0.0, false, 0.0, None),
            r(0.0, true, 1e-2, None),
            r(0.9, false, 1e-6, Some(0.001)),
            r(0.9, true, 1e-2, Some(0.02)),
        ]
    }

    /// Max |a − b| and max |b| of two tensors.
    fn diff_and_scale<HB: Backend, const D: usize>(
        a: &Tensor<HB, D>,
        b: &Tensor<HB, D>,
    ) -> (f64, f64) {
        let v = |t: &Tensor<HB, D>| {
            t.clone()
                .into_data()
                .convert::<f64>()
                .to_vec::<f64>()
                .unwrap()
        };
        let (a, b) = (v(a), v(b));
        let err = a
            .iter()
            .zip(&b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
        (err, b.iter().fold(0.0f64, |m, x| m.max(x.abs())))
    }

    /// Three steps of the host update against the composed rule on a tensor of `shape` (several
    /// chunks): bit for bit without LARS; with it (LARS sums its norms in f64) to `lars_tol`.
    fn host_update_matches_composed<HB: Backend, const D: usize>(shape: [usize; D], lars_tol: f64) {
        let dev = Default::default();
        let n: usize = shape.iter().product();
        let t = |seed: f64| {
            let v: Vec<f64> = (0..n)
                .map(|i| ((i as f64 * 0.618 + seed).fract() - 0.5) * (1.0 + seed))
                .collect();
            Tensor::<HB, 1>::from_floats(v.as_slice(), &dev).reshape(shape)
        };
        for rule in rules() {
            let (mut wh, mut wc) = (t(0.1), t(0.1));
            let (mut sh, mut sc): (Option<MomentumState<HB, D>>, _) = (None, None);
            assert!(
                host_update::host_dtype(&wh, &t(0.3), None).is_some(),
                "the host update must be the path under test"
            );
            let tol = if rule.lars_trust.is_some() && D > 1 {
                lars_tol
            } else {
                0.0
            };
            for step in 0..3 {
                let (g, lr) = (t(0.3 + step as f64), 0.5 / (step + 1) as f64);
                let (w, s) = SimpleOptimizer::<HB>::step(&rule, lr, wh, g.clone(), sh);
                let (cw, cs) = rule.step_composed(lr, wc, g, sc);
                let s = s.expect("a velocity");
                for (what, a, b) in [("w", &w, &cw), ("velocity", &s.velocity, &cs.velocity)] {
                    let (err, scale) = diff_and_scale(a, b);
                    assert!(
                        err <= tol * scale,
                        "{rule:?} {D}-D step {step} {what}: {err:e} (scale {scale:e})"
                    );
                }
                (wh, wc, sh, sc) = (w, cw, Some(s), Some(cs));
            }
        }
    }

    /// In f32 the composed rule's own norms (f32 sums over 70 k elements) are off by ~1e-6
    /// relative, so LARS is compared at 1e-5; the f64 test checks it at 1e-13.
    #[test]
    fn host_update_matches_the_composed_rule_in_f32() {
        host_update_matches_composed::<Flex, 2>([7, 10_001], 1e-5);
        host_update_matches_composed::<Flex, 1>([70_007], 1e-5);
    }

    #[test]
    fn host_update_matches_the_composed_rule_in_f64() {
        host_update_matches_composed::<burn::backend::NdArray<f64>, 2>([7, 10_001], 1e-13);
        host_update_matches_composed::<burn::backend::NdArray<f64>, 1>([70_007], 1e-13);
    }

    /// A weight tensor that the module still shares elsewhere is not changed by the step.
    #[test]
    fn host_update_leaves_shared_tensors_alone() {
        let rule = rules()[1];
        let w = t2(&[1.0, -2.0, 0.5, 0.0]);
        let kept = w.clone();
        let (w1, _) = SimpleOptimizer::<B>::step(&rule, 0.5, w, t2(&[0.3, 0.1, -0.2, 1.0]), None);
        assert_eq!(vals(kept), vec![1.0, -2.0, 0.5, 0.0]);
        assert_ne!(vals(w1), vec![1.0, -2.0, 0.5, 0.0]);
    }

    #[test]
    fn batch_norm_parameters_form_their_own_group() {
        let dev = Default::default();
        let net = rho_model::ResNet3dConfig::preset("slow_r18_tiny")
            .unwrap()
            .with_num_classes(Some(3))
            .init::<Autodiff<B>>(&dev);
        let (bn, rest) = split_batch_norm_params::<Autodiff<B>, _>(&net);
        // 2 parameters per BN; the rest are conv weights and the head's weight and bias.
        assert_eq!(bn.len(), 2 * net.batch_norms().len());
        let convs = rest.len() - 2;
        assert_eq!(convs, net.batch_norms().len());
    }

    #[test]
    fn grouped_step_decays_weights_but_not_batch_norm() {
        type AB = Autodiff<B>;
        let dev = Default::default();
        let net = rho_model::ResNet3dConfig::preset("slow_r18_tiny")
            .unwrap()
            .init::<AB>(&dev);
        let rule = SgdRule {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.1,
            lars_trust: None,
        };
        let mut opt = GroupedOptimizer::new(&net, rule, 0.0);
        let x = Tensor::<AB, 5>::ones([2, 3, 2, 32, 32], &dev);
        let loss = net.forward(x).sum().mul_scalar(0.0); // zero gradients: only decay acts
        let w0 = net
            .stem
            .unit
            .conv
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let net = opt.step(0.5, net, loss.backward());
        let w1 = net
            .stem
            .unit
            .conv
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        // g' = wd·w; buf = g'; w ← w − lr·(g' + μ·g') = w·(1 − 0.5·0.1·1.9)
        for (a, b) in w1.iter().zip(&w0) {
            assert!((a - b * (1.0 - 0.5 * 0.1 * 1.9)).abs() < 1e-6);
        }
        let gamma = net
            .stem
            .unit
            .bn
            .gamma
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(
            gamma.iter().all(|g| (g - 1.0).abs() < 1e-7),
            "BN γ must not decay: {gamma:?}"
        );
    }

    #[derive(burn::module::Module, Debug)]
    struct Toy<B: Backend> {
        body: burn::nn::Linear<B>,
        head: burn::nn::Linear<B>,
        norm: burn::nn::BatchNorm<B>,
    }

    type AB = Autodiff<burn::backend::NdArray<f64>>;

    fn toy() -> Toy<AB> {
        use burn::nn::{BatchNormConfig, LinearConfig};
        let dev = Default::default();
        <AB as Backend>::seed(&dev, 7);
        let net = Toy {
            body: LinearConfig::new(5, 4).init(&dev),
            head: LinearConfig::new(4, 3).init(&dev),
            norm: BatchNormConfig::new(4).init(&dev),
        };
        flat(&net); // Burn initialises parameters lazily: draw them once, before any clone
        net
    }

    fn toy_grads(net: &Toy<AB>) -> <AB as AutodiffBackend>::Gradients {
        let dev = Default::default();
        let x = Tensor::<AB, 1>::from_floats(
            [0.3, -1.2, 0.8, 0.1, -0.4, 2.0, 0.5, -0.7, 1.1, -0.2],
            &dev,
        )
        .reshape([2, 5]);
        let h = net.norm.forward(net.body.forward(x)).tanh();
        net.head.forward(h).powf_scalar(2.0).sum().backward()
    }

    fn flat<M: burn::module::Module<AB>>(m: &M) -> Vec<f64> {
        let mut out = Vec::new();
        struct All<'a>(&'a mut Vec<f64>);
        impl ModuleVisitor<AB> for All<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AB, D>>) {
                self.0.extend(
                    p.val()
                        .into_data()
                        .convert::<f64>()
                        .to_vec::<f64>()
                        .unwrap(),
                );
            }
        }
        m.visit(&mut All(&mut out));
        out
    }

    /// Parameters moved to a multiplier group take exactly the step of the same rule at
    /// `lr × multiplier` (LARS and BN groups alike), the others are untouched by it; checkpoint
    /// round trips between momentum steps keep every group's buffer.
    #[test]
    fn a_learning_rate_multiplier_group_steps_at_its_multiple() {
        let rule = SgdRule {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 1e-3,
            lars_trust: Some(0.02),
        };
        let net = toy();
        let head_ids: Vec<ParamId> = {
            struct Ids(Vec<ParamId>);
            impl ModuleVisitor<AB> for Ids {
                fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AB, D>>) {
                    self.0.push(p.id);
                }
            }
            let mut ids = Ids(Vec::new());
            net.head.visit(&mut ids);
            net.norm.visit(&mut ids);
            ids.0
        };
        let run = |mult: f64, lr: f64, steps: usize, round_trip: bool| {
            let mut opt =
                GroupedOptimizer::new(&net, rule, 0.0).with_lr_multiplier(&head_ids, mult);
            let mut n = net.clone();
            for _ in 0..steps {
                let g = toy_grads(&n);
                n = opt.step(lr, n, g);
                if round_trip {
                    let (bn, rest) = opt.to_bytes().unwrap();
                    let fresh =
                        GroupedOptimizer::new(&n, rule, 0.0).with_lr_multiplier(&head_ids, mult);
                    opt = fresh.load_bytes(&bn, &rest, &Default::default()).unwrap();
                }
            }
            n
        };
        // One step: the gradients are those of the same weights in all three runs.
        let with = run(7.0, 0.05, 1, false);
        let plain = run(1.0, 0.05, 1, false);
        let fast = run(1.0, 0.35, 1, false);
        let moved = |n: &Toy<AB>| [flat(&n.head), flat(&n.norm)].concat();
        let (three, resumed) = (run(7.0, 0.05, 3, false), run(7.0, 0.05, 3, true));
        // Checkpoints store the buffers as f32 (Burn's full-precision records): 1e-6 there, far
        // below what a lost or misassigned buffer would change (~lr · |v| ≈ 1e-3).
        for (what, a, b, tol) in [
            ("body", flat(&with.body), flat(&plain.body), 1e-14),
            ("head and BN", moved(&with), moved(&fast), 1e-14),
            (
                "after checkpoint round trips",
                flat(&resumed),
                flat(&three),
                1e-6,
            ),
        ] {
            let err = a
                .iter()
                .zip(&b)
                .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()));
            assert!(err < tol, "{what}: {err:e}");
        }
        let changed = moved(&with)
            .iter()
            .zip(&moved(&plain))
            .any(|(x, y)| (x - y).abs() > 1e-6);
        assert!(
            changed,
            "the multiplier must change the moved parameters' steps"
        );
        let opt = GroupedOptimizer::new(&net, rule, 0.0).with_lr_multiplier(&head_ids, 7.0);
        assert_eq!(opt.lr_multiplier(net.head.weight.id), Some(7.0));
        assert_eq!(opt.lr_multiplier(net.norm.gamma.id), Some(7.0));
        assert_eq!(opt.lr_multiplier(net.body.weight.id), Some(1.0));
    }
}
