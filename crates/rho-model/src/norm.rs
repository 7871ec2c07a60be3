//! `BatchNorm`: PyTorch's BatchNorm over the channel axis of [N, C, ...] tensors of any rank
//! (the backbone's 3D BatchNorm and the heads' 1-D one), computed in an [N·C, S] layout.
//!
//! Burn's `nn::BatchNorm` broadcasts over a middle dimension, which the CPU (flex) backend does
//! slowly enough to dominate a 3D-CNN train step. Folding the batch and channel dims makes every
//! broadcast a fast row-wise one. The statistics follow PyTorch exactly: two-pass biased variance
//! for normalising, the unbiased variance in the running estimate, momentum in PyTorch's sense.
//! Training versus inference follows Burn's rule: batch statistics on an autodiff backend.

use burn::module::{Module, Param, RunningState};
use burn::tensor::activation::relu;
use burn::tensor::{backend::Backend, Tensor, TensorData};

use crate::cpu_norm::{batch_norm_train, Moments, NormInputs, NormStrategy};

/// Batch normalisation over dim 1 of a tensor of any rank ≥ 2.
#[derive(Module, Debug)]
pub struct BatchNorm<B: Backend> {
    /// Scale (PyTorch `weight`).
    pub gamma: Param<Tensor<B, 1>>,
    /// Shift (PyTorch `bias`).
    pub beta: Param<Tensor<B, 1>>,
    pub running_mean: RunningState<Tensor<B, 1>>,
    /// Unbiased running variance, as PyTorch stores it.
    pub running_var: RunningState<Tensor<B, 1>>,
    pub momentum: f64,
    pub epsilon: f64,
    /// Fused host kernels or composed tensor ops, fixed at construction by the backend's type.
    #[module(skip)]
    pub strategy: NormStrategy,
    /// False for PyTorch's `affine=False`: γ and β stay 1 and 0 and get no gradient (they are
    /// kept as parameters so that every BatchNorm has one record layout).
    #[module(skip)]
    pub affine: bool,
}

/// The name of [`BatchNorm`] before it was known to serve every rank.
pub type BatchNorm3d<B> = BatchNorm<B>;

impl<B: Backend> BatchNorm<B> {
    /// γ = 1, β = 0, running mean 0 and variance 1 (PyTorch's init).
    pub fn new(channels: usize, epsilon: f64, momentum: f64, device: &B::Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([channels], device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            momentum,
            epsilon,
            strategy: NormStrategy::for_backend::<B>(),
            affine: true,
        }
    }

    /// A BatchNorm without learnable scale and shift (PyTorch's `affine=False`): the output of
    /// every channel has batch mean 0 and variance 1.
    pub fn non_affine(channels: usize, epsilon: f64, momentum: f64, device: &B::Device) -> Self {
        Self {
            affine: false,
            ..Self::new(channels, epsilon, momentum, device)
        }
    }

    /// γ, cut from the graph when the BatchNorm is not affine.
    fn scale(&self) -> Tensor<B, 1> {
        self.trained_if_affine(self.gamma.val())
    }

    /// β, cut from the graph when the BatchNorm is not affine.
    fn shift(&self) -> Tensor<B, 1> {
        self.trained_if_affine(self.beta.val())
    }

    fn trained_if_affine(&self, t: Tensor<B, 1>) -> Tensor<B, 1> {
        if self.affine {
            t
        } else {
            t.detach()
        }
    }

    pub fn channels(&self) -> usize {
        self.gamma.dims()[0]
    }

    /// Normalises `x` with batch statistics when the backend records gradients, and with the
    /// running statistics otherwise.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.forward_fused(x, None, false)
    }

    /// `relu(self.forward(x) + skip)` (each part optional) in one fused pass where the host
    /// kernels serve (train mode on the CPU backends, without sync or groups); otherwise
    /// composed from [`forward`](Self::forward). Residual blocks end this way.
    pub fn forward_fused<const D: usize>(
        &self,
        x: Tensor<B, D>,
        skip: Option<Tensor<B, D>>,
        apply_relu: bool,
    ) -> Tensor<B, D> {
        let host = self.strategy == NormStrategy::Host
            && B::ad_enabled(&x.device())
            && crate::batch_groups::active().is_none()
            && !crate::batch_stats_sync::is_active();
        let (x, skip) = if host {
            let dims = x.dims();
            let (n, c) = (dims[0], dims[1]);
            let s: usize = dims[2..].iter().product();
            let inputs = NormInputs {
                x: x.reshape([n, c, s]),
                gamma: self.scale(),
                beta: self.shift(),
                skip: skip.map(|t| t.reshape([n, c, s])),
            };
            match batch_norm_train(inputs, apply_relu, self.epsilon) {
                Ok((y, moments)) => {
                    self.update_running_from(moments, n * s, &y.device());
                    return y.reshape(dims);
                }
                Err(t) => (t.x.reshape(dims), t.skip.map(|k| k.reshape(dims))),
            }
        } else {
            (x, skip)
        };
        let y = if B::ad_enabled(&x.device()) {
            self.forward_train(x)
        } else {
            self.forward_eval(x)
        };
        let y = match skip {
            Some(k) => y + k,
            None => y,
        };
        if apply_relu {
            relu(y)
        } else {
            y
        }
    }

    /// Batch statistics from composed tensor ops (any backend); updates the running estimates.
    /// Inside
    /// [`with_batch_stats_sync`](crate::with_batch_stats_sync) the statistics are those of the
    /// whole sync group (SyncBatchNorm): every device contributes its per-channel mean and
    /// biased variance, and they are pooled exactly (equal shards: the mean of the means, and the
    /// mean of the variances plus the variance of the means), so the result equals BatchNorm
    /// over the concatenated batch, gradients included.
    pub fn forward_train<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        if let Some(groups) = crate::batch_groups::active() {
            return self.forward_grouped(x, &groups);
        }
        let dims = x.dims();
        let (n, c) = (dims[0], dims[1]);
        let s: usize = dims[2..].iter().product();
        let local_count = (n * s) as f64;
        let x2 = x.reshape([n * c, s]);

        // × 1/count, not div_scalar: docs/architecture.md "Exact f64 gradients".
        let local_mean = x2
            .clone()
            .sum_dim(1)
            .reshape([n, c])
            .sum_dim(0)
            .mul_scalar(local_count.recip()); // [1, c]
        let centred = x2.clone() - per_row(local_mean.clone(), n);
        let local_var = centred
            .clone()
            .square()
            .sum_dim(1)
            .reshape([n, c])
            .sum_dim(0)
            .mul_scalar(local_count.recip()); // biased, [1, c]

        let row = || Tensor::cat(vec![local_mean.clone(), local_var.clone()], 1);
        let (mean, var, centred, count) = match crate::batch_stats_sync::gather_rows(row) {
            None => (local_mean, local_var, centred, local_count),
            Some(rows) => {
                let g = rows.dims()[0];
                let means = rows.clone().slice([0..g, 0..c]);
                let vars = rows.slice([0..g, c..2 * c]);
                let mean = means.clone().mean_dim(0);
                let spread = (means - mean.clone().repeat_dim(0, g)).square().mean_dim(0);
                let var = vars.mean_dim(0) + spread;
                let centred = x2 - per_row(mean.clone(), n);
                (mean, var, centred, local_count * g as f64)
            }
        };

        self.update_running(
            mean.detach().reshape([c]),
            var.clone().detach().reshape([c]),
            count,
        );

        let scale = self.scale().reshape([1, c]) / var.add_scalar(self.epsilon).sqrt();
        (centred * per_row(scale, n) + per_row(self.shift().reshape([1, c]), n)).reshape(dims)
    }

    /// Moves the running estimates towards a batch's per-channel mean and biased variance over
    /// `count` values per channel (the variance made unbiased, PyTorch's momentum).
    fn update_running(&self, mean: Tensor<B, 1>, var: Tensor<B, 1>, count: f64) {
        let m = self.momentum;
        let unbiased = if count > 1.0 {
            count / (count - 1.0)
        } else {
            1.0
        };
        let old_mean = self.running_mean.value_sync();
        let old_var = self.running_var.value_sync();
        self.running_mean
            .update(old_mean.mul_scalar(1.0 - m) + mean.mul_scalar(m));
        self.running_var
            .update(old_var.mul_scalar(1.0 - m) + var.mul_scalar(m * unbiased));
    }

    /// [`update_running`](Self::update_running) from host-computed statistics.
    fn update_running_from(&self, m: Moments, count: usize, device: &B::Device) {
        let dtype = self.running_mean.value_sync().dtype();
        let c = m.mean.len();
        let vec = |v: Vec<f64>| {
            Tensor::<B, 1>::from_data(
                TensorData::new(v, [c]).convert_dtype(dtype),
                (device, dtype),
            )
        };
        self.update_running(vec(m.mean), vec(m.var), count as f64);
    }

    /// Batch statistics pooled by `groups` (see [`crate::batch_groups`]): each sample is
    /// normalised with its group's mean and biased variance, computed over the group's samples
    /// on every device (two-pass: the means first, then the centred squares). The running
    /// estimates move towards the mean over groups (the groups are of equal size).
    fn forward_grouped<const D: usize>(
        &self,
        x: Tensor<B, D>,
        groups: &crate::batch_groups::BatchGroups,
    ) -> Tensor<B, D> {
        let dims = x.dims();
        let (n, c) = (dims[0], dims[1]);
        let s: usize = dims[2..].iter().product();
        assert_eq!(
            groups.of_sample.len(),
            n,
            "grouped BatchNorm: a group for each of the {n} samples is needed"
        );
        let g = groups.groups;
        let a = groups.assignment::<B>(&x.device()); // [g, n]
        let x2 = x.reshape([n * c, s]);
        let per_sample = x2.clone().sum_dim(1).reshape([n, c]);
        let counts = a.clone().sum_dim(1).mul_scalar(s as f64); // [g, 1]
        let sums =
            groups.sum_over_devices(Tensor::cat(vec![a.clone().matmul(per_sample), counts], 1));
        let count = sums.clone().slice([0..g, c..c + 1]).clamp_min(1.0);
        let mean_g = sums.slice([0..g, 0..c]) / count.clone();
        let at = a.clone().transpose(); // [n, g]
        let centred = x2 - at.clone().matmul(mean_g.clone()).reshape([n * c, 1]);
        let sq = centred.clone().square().sum_dim(1).reshape([n, c]);
        let var_g = groups.sum_over_devices(a.matmul(sq)) / count.clone();

        let m = self.momentum;
        let unbiased = count.clone() / (count - 1.0).clamp_min(1.0);
        let run_mean = mean_g.clone().mean_dim(0).reshape([c]);
        let run_var = (var_g.clone() * unbiased).mean_dim(0).reshape([c]);
        let old_mean = self.running_mean.value_sync();
        let old_var = self.running_var.value_sync();
        self.running_mean
            .update(old_mean.mul_scalar(1.0 - m) + run_mean.detach().mul_scalar(m));
        self.running_var
            .update(old_var.mul_scalar(1.0 - m) + run_var.detach().mul_scalar(m));

        let var_i = at.matmul(var_g); // [n, c]
        let scale = self.scale().reshape([1, c]) / var_i.add_scalar(self.epsilon).sqrt();
        (centred * scale.reshape([n * c, 1]) + per_row(self.shift().reshape([1, c]), n))
            .reshape(dims)
    }

    /// Running statistics: one fused scale and shift per channel.
    pub fn forward_eval<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let (n, c) = (dims[0], dims[1]);
        let s: usize = dims[2..].iter().product();
        let mean = self.running_mean.value_sync().reshape([1, c]);
        let var = self.running_var.value_sync().reshape([1, c]);
        let scale = self.scale().reshape([1, c]) / var.add_scalar(self.epsilon).sqrt();
        let shift = self.shift().reshape([1, c]) - mean * scale.clone();
        (x.reshape([n * c, s]) * per_row(scale, n) + per_row(shift, n)).reshape(dims)
    }

    /// Folds pending running-statistic updates into the stored values (before export or EMA).
    pub fn sync_running_stats(&self) {
        let _ = self.running_mean.value_sync();
        let _ = self.running_var.value_sync();
    }
}

/// [1, c] per-channel values → [n·c, 1], one per row of the folded layout.
fn per_row<B: Backend>(v: Tensor<B, 2>, n: usize) -> Tensor<B, 2> {
    let c = v.dims()[1];
    v.repeat_dim(0, n).reshape([n * c, 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, TensorData, Tolerance};

    type B = Flex;
    type AB = Autodiff<Flex>;

    /// Closed-form reference: per-channel mean and variance computed on the host.
    fn reference(
        x: &[f32],
        n: usize,
        c: usize,
        s: usize,
        g: &[f32],
        b: &[f32],
    ) -> (Vec<f32>, Vec<f64>, Vec<f64>) {
        let mut y = vec![0f32; x.len()];
        let (mut means, mut vars) = (vec![0f64; c], vec![0f64; c]);
        for ch in 0..c {
            let vals: Vec<f64> = (0..n)
                .flat_map(|i| (0..s).map(move |j| (i, j)))
                .map(|(i, j)| x[(i * c + ch) * s + j] as f64)
                .collect();
            let mean = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64;
            means[ch] = mean;
            vars[ch] = var;
            for i in 0..n {
                for j in 0..s {
                    let k = (i * c + ch) * s + j;
                    y[k] = (((x[k] as f64 - mean) / (var + 1e-5).sqrt()) * g[ch] as f64
                        + b[ch] as f64) as f32;
                }
            }
        }
        (y, means, vars)
    }

    #[test]
    fn train_mode_matches_closed_form_and_updates_unbiased_running_stats() {
        let dev = Default::default();
        let (n, c, t, h, w) = (3, 4, 2, 3, 5);
        let x = Tensor::<AB, 5>::random([n, c, t, h, w], Distribution::Normal(2.0, 3.0), &dev);
        let mut bn = BatchNorm::<AB>::new(c, 1e-5, 0.1, &dev);
        let g: Vec<f32> = vec![0.5, 1.5, -1.0, 2.0];
        let b: Vec<f32> = vec![0.1, -0.2, 0.3, 0.0];
        bn.gamma = Param::from_tensor(Tensor::from_floats(g.as_slice(), &dev));
        bn.beta = Param::from_tensor(Tensor::from_floats(b.as_slice(), &dev));
        let xs = x.to_data().to_vec::<f32>().unwrap();
        let y = bn.forward(x);
        let (yr, means, vars) = reference(&xs, n, c, t * h * w, &g, &b);
        y.into_data().assert_approx_eq::<f32>(
            &TensorData::new(yr, [n, c, t, h, w]),
            Tolerance::absolute(1e-4),
        );

        let cnt = (n * t * h * w) as f64;
        let rm: Vec<f32> = means.iter().map(|m| (0.1 * m) as f32).collect();
        let rv: Vec<f32> = vars
            .iter()
            .map(|v| (0.9 + 0.1 * v * cnt / (cnt - 1.0)) as f32)
            .collect();
        bn.running_mean
            .value_sync()
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::new(rm, [c]), Tolerance::absolute(1e-4));
        bn.running_var
            .value_sync()
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::new(rv, [c]), Tolerance::absolute(1e-4));
    }

    /// Grouped statistics on one device equal BatchNorm run on each group's samples alone.
    #[test]
    fn grouped_statistics_equal_batch_norm_of_each_group() {
        use crate::batch_groups::{with_batch_groups, BatchGroups};
        let dev = Default::default();
        let (n, c, s) = (6, 3, 5);
        let x = Tensor::<AB, 3>::random([n, c, s], Distribution::Normal(0.5, 2.0), &dev);
        let bn = BatchNorm::<AB>::new(c, 1e-5, 0.1, &dev);
        // Samples 0, 2, 5 form group 1; 1, 3, 4 group 0.
        let of_sample = vec![1, 0, 1, 0, 0, 1];
        let groups = BatchGroups {
            of_sample: of_sample.clone(),
            groups: 2,
            reduce: None,
        };
        let y = with_batch_groups(groups, || bn.forward(x.clone()));
        let y = y.into_data().to_vec::<f32>().unwrap();
        let xs = x.to_data().to_vec::<f32>().unwrap();
        let mut mean_of_means = vec![0f64; c];
        for grp in 0..2 {
            let members: Vec<usize> = (0..n).filter(|&i| of_sample[i] == grp).collect();
            let sub: Vec<f32> = members
                .iter()
                .flat_map(|&i| xs[i * c * s..(i + 1) * c * s].to_vec())
                .collect();
            let (want, means, _) = reference(&sub, members.len(), c, s, &[1.0; 3], &[0.0; 3]);
            for (k, &i) in members.iter().enumerate() {
                for j in 0..c * s {
                    let (a, b) = (y[i * c * s + j], want[k * c * s + j]);
                    assert!((a - b).abs() < 1e-4, "sample {i}: {a} vs {b}");
                }
            }
            for ch in 0..c {
                mean_of_means[ch] += means[ch] / 2.0;
            }
        }
        let rm: Vec<f32> = mean_of_means.iter().map(|m| (0.1 * m) as f32).collect();
        bn.running_mean
            .value_sync()
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::new(rm, [c]), Tolerance::absolute(1e-4));
    }

    #[test]
    fn eval_mode_uses_running_stats() {
        let dev = Default::default();
        let bn = BatchNorm::<B>::new(2, 1e-5, 0.1, &dev);
        bn.running_mean
            .update(Tensor::from_floats([1.0, -2.0], &dev));
        bn.running_var
            .update(Tensor::from_floats([4.0, 0.25], &dev));
        let x = Tensor::<B, 3>::from_floats([[[3.0, 1.0], [-2.0, -1.5]]], &dev);
        let y = bn.forward(x).into_data().to_vec::<f32>().unwrap();
        let e = |v: f64, m: f64, var: f64| ((v - m) / (var + 1e-5f64).sqrt()) as f32;
        let want = [
            e(3.0, 1.0, 4.0),
            e(1.0, 1.0, 4.0),
            e(-2.0, -2.0, 0.25),
            e(-1.5, -2.0, 0.25),
        ];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// The trap behind `mul_scalar(count.recip())` above (docs/architecture.md "Exact f64
    /// gradients"): Burn 0.21's `div_scalar` backward multiplies by 1/d computed in f32, even
    /// on f64 tensors; multiplying by the reciprocal is exact. When the second assertion fails,
    /// Burn has fixed it and the workaround may go.
    #[test]
    fn scalar_division_gradients_in_f64() {
        let x = Tensor::<AB, 1>::from_data(
            TensorData::new(vec![1.0f64, 2.0, 3.0], [3]),
            (&Default::default(), burn::tensor::DType::F64),
        )
        .require_grad();
        let grad_of = |y: Tensor<AB, 1>| -> Vec<f64> {
            let g = y.sum().backward();
            x.grad(&g).unwrap().into_data().to_vec().unwrap()
        };
        let exact = 1.0 / 9.0;
        let by_recip = grad_of(x.clone().mul_scalar(9f64.recip()));
        assert!(by_recip.iter().all(|&g| g == exact), "{by_recip:?}");
        let by_div = grad_of(x.clone().div_scalar(9.0));
        let err = (by_div[0] - exact).abs() / exact;
        assert!(
            err > 1e-10,
            "div_scalar's gradient is exact now (error {err:.1e}): Burn fixed the f32 rounding"
        );
    }

    #[test]
    fn gradient_matches_burn_batchnorm() {
        // Burn's own BatchNorm is an independent implementation of the same function.
        let dev = Default::default();
        let x = Tensor::<AB, 5>::random([2, 3, 2, 4, 4], Distribution::Normal(0.0, 1.0), &dev)
            .require_grad();
        let weights =
            Tensor::<AB, 5>::random([2, 3, 2, 4, 4], Distribution::Normal(0.0, 1.0), &dev);
        let ours = BatchNorm::<AB>::new(3, 1e-5, 0.1, &dev);
        let theirs = burn::nn::BatchNormConfig::new(3).init::<AB>(&dev);
        let g1 = (ours.forward(x.clone()) * weights.clone()).sum().backward();
        let g2 = (theirs.forward(x.clone()) * weights).sum().backward();
        let d1 = x.grad(&g1).unwrap();
        let d2 = x.grad(&g2).unwrap();
        d1.into_data()
            .assert_approx_eq::<f32>(&d2.into_data(), Tolerance::absolute(1e-4));
        let gg1 = ours.gamma.val().grad(&g1).unwrap();
        let gg2 = theirs.gamma.val().grad(&g2).unwrap();
        gg1.into_data()
            .assert_approx_eq::<f32>(&gg2.into_data(), Tolerance::absolute(1e-4));
    }

    /// `affine = false` on both paths (host kernels and composed ops): every output channel
    /// has batch mean 0 and biased variance v / (v + ε) (v: the input's), the input still gets
    /// its gradient, and γ, β get none (so no optimiser moves them).
    #[test]
    fn non_affine_batch_norm_standardises_and_leaves_gamma_and_beta_alone() {
        let dev = Default::default();
        for strategy in [NormStrategy::Host, NormStrategy::Composed] {
            let mut bn = BatchNorm::<AB>::non_affine(4, 1e-5, 0.1, &dev);
            bn.strategy = strategy;
            let x = Tensor::<AB, 2>::random([8, 4], Distribution::Normal(3.0, 2.0), &dev)
                .require_grad();
            let w = Tensor::<AB, 2>::random([8, 4], Distribution::Normal(0.0, 1.0), &dev);
            let y = bn.forward(x.clone());
            let yv = y.to_data().to_vec::<f32>().unwrap();
            let xv = x.to_data().to_vec::<f32>().unwrap();
            for ch in 0..4 {
                let col =
                    |v: &[f32]| -> Vec<f64> { (0..8).map(|i| v[i * 4 + ch] as f64).collect() };
                let (yc, xc) = (col(&yv), col(&xv));
                let mean = yc.iter().sum::<f64>() / 8.0;
                let var = yc.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 8.0;
                let xm = xc.iter().sum::<f64>() / 8.0;
                let xvar = xc.iter().map(|v| (v - xm).powi(2)).sum::<f64>() / 8.0;
                assert!(mean.abs() < 1e-5, "{strategy:?} channel {ch}: mean {mean}");
                let want = xvar / (xvar + 1e-5);
                assert!(
                    (var - want).abs() < 1e-4,
                    "{strategy:?} channel {ch}: var {var}"
                );
            }
            let g = (y * w).sum().backward();
            assert!(
                x.grad(&g).is_some(),
                "{strategy:?}: the input lost its gradient"
            );
            assert!(
                bn.gamma.val().grad(&g).is_none(),
                "{strategy:?}: γ got a gradient"
            );
            assert!(
                bn.beta.val().grad(&g).is_none(),
                "{strategy:?}: β got a gradient"
            );
        }
    }

    /// A sync group of two where the other device's statistics are fixed: the output on this
    /// device must be BatchNorm over both devices' data (closed form), rows of this device.
    #[test]
    fn synchronised_statistics_equal_batch_norm_over_the_concatenated_batch() {
        use crate::batch_stats_sync::{with_batch_stats_sync, BatchStatsSync};
        use std::any::Any;
        use std::sync::Arc;
        struct OtherDevice(Vec<f32>);
        impl BatchStatsSync for OtherDevice {
            fn group_size(&self) -> usize {
                2
            }
            fn gather(&self, row: Box<dyn Any>) -> Box<dyn Any> {
                let mine = *row.downcast::<Tensor<AB, 2>>().unwrap();
                let k = self.0.len();
                let other = Tensor::<AB, 2>::from_data(
                    TensorData::new(self.0.clone(), [1, k]),
                    &mine.device(),
                );
                Box::new(Tensor::cat(vec![mine, other], 0))
            }
        }
        let dev = Default::default();
        let (n, c, s) = (2, 3, 5);
        let mine = Tensor::<AB, 3>::random([n, c, s], Distribution::Normal(1.0, 2.0), &dev);
        let theirs = Tensor::<AB, 3>::random([n, c, s], Distribution::Normal(-1.0, 0.5), &dev);
        let (xm, xt) = (
            mine.to_data().to_vec::<f32>().unwrap(),
            theirs.to_data().to_vec::<f32>().unwrap(),
        );
        // The other device's row: its per-channel mean and biased variance.
        let mut row = vec![0f32; 2 * c];
        for ch in 0..c {
            let v: Vec<f64> = (0..n)
                .flat_map(|i| (0..s).map(move |j| (i * c + ch) * s + j))
                .map(|k| xt[k] as f64)
                .collect();
            let m = v.iter().sum::<f64>() / v.len() as f64;
            row[ch] = m as f32;
            row[c + ch] = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64) as f32;
        }
        let bn = BatchNorm::<AB>::new(c, 1e-5, 0.1, &dev);
        let y = with_batch_stats_sync(Arc::new(OtherDevice(row)), || bn.forward(mine));
        let all = [xm, xt].concat();
        let (yr, means, _) = reference(&all, 2 * n, c, s, &[1.0; 3], &[0.0; 3]);
        y.into_data().assert_approx_eq::<f32>(
            &TensorData::new(yr[..n * c * s].to_vec(), [n, c, s]),
            Tolerance::absolute(1e-4),
        );
        let rm: Vec<f32> = means.iter().map(|m| (0.1 * m) as f32).collect();
        bn.running_mean
            .value_sync()
            .into_data()
            .assert_approx_eq::<f32>(&TensorData::new(rm, [c]), Tolerance::absolute(1e-4));
        // Outside the scope BatchNorm is per-device again.
        let x = Tensor::<AB, 3>::random([n, c, s], Distribution::Normal(0.0, 1.0), &dev);
        let (local, _, _) = reference(
            &x.to_data().to_vec::<f32>().unwrap(),
            n,
            c,
            s,
            &[1.0; 3],
            &[0.0; 3],
        );
        bn.forward(x).into_data().assert_approx_eq::<f32>(
            &TensorData::new(local, [n, c, s]),
            Tolerance::absolute(1e-4),
        );
    }
}
