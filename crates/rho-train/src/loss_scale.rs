//! `LossScaler`: dynamic loss scaling for f16 training (docs/architecture.md, "Mixed
//! precision"), the rule of PyTorch's `GradScaler`.
//!
//! f16 flushes gradients below 6e-8 to zero, so the loss is multiplied by a large scale before
//! back-propagation and the gradients divided by it afterwards. A step whose gradients overflow
//! (Inf or NaN) is skipped, weights and optimiser state untouched, and the scale halves; after
//! `growth_interval` good steps in a row it doubles.

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor};
use serde::{Deserialize, Serialize};

/// The scale and how many good steps it has lasted (checkpointed with the run).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scale: f64,
    pub good_steps: usize,
    pub growth_interval: usize,
}

impl LossScaler {
    pub const GROWTH: f64 = 2.0;
    pub const BACKOFF: f64 = 0.5;

    pub fn new(scale: f64, growth_interval: usize) -> Self {
        Self {
            scale,
            good_steps: 0,
            growth_interval: growth_interval.max(1),
        }
    }

    /// After a step: halve on overflow, double after `growth_interval` good steps.
    pub fn update(&mut self, overflowed: bool) {
        if overflowed {
            self.scale *= Self::BACKOFF;
            self.good_steps = 0;
        } else {
            self.good_steps += 1;
            if self.good_steps >= self.growth_interval {
                self.scale *= Self::GROWTH;
                self.good_steps = 0;
            }
        }
    }
}

/// Every gradient of `module` in each of `groups` multiplied by `factor`, and whether all of
/// them are finite (one reduction, one read-back for all groups).
pub fn unscale<B: AutodiffBackend, M: AutodiffModule<B>, const G: usize>(
    module: &M,
    groups: [GradientsParams; G],
    factor: f64,
) -> ([GradientsParams; G], bool) {
    struct Scale<IB: Backend> {
        grads: GradientsParams,
        factor: f64,
        total: Option<Tensor<IB, 1>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Scale<B::InnerBackend> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let Some(g) = self.grads.remove::<B::InnerBackend, D>(p.id) else {
                return;
            };
            let g = g.mul_scalar(self.factor);
            // Σ|g| is Inf or NaN exactly when some element is.
            let s = g.clone().abs().sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + s,
                None => s,
            });
            self.grads.register::<B::InnerBackend, D>(p.id, g);
        }
    }
    let mut total = None;
    let groups = groups.map(|grads| {
        let mut v = Scale::<B::InnerBackend> {
            grads,
            factor,
            total: total.take(),
        };
        module.visit(&mut v);
        total = v.total;
        v.grads
    });
    let finite = total
        .map(|t| t.into_scalar().elem::<f64>().is_finite())
        .unwrap_or(true);
    (groups, finite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_on_overflow_and_doubles_after_the_interval() {
        let mut s = LossScaler::new(1024.0, 3);
        s.update(false);
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (1024.0, 2));
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (512.0, 0));
        for _ in 0..3 {
            s.update(false);
        }
        assert_eq!((s.scale, s.good_steps), (1024.0, 0));
    }
}
