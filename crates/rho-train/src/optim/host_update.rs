//! The momentum-SGD / LARS update of one tensor as one parallel pass over host memory, for the
//! CPU backends (flex, ndarray; docs/architecture.md "CPU optimiser update").
//!
//! Composed of tensor ops, the update is five to seven element-wise passes, each on one thread
//! and each allocating a buffer the size of the parameter; on a 30 M-parameter network that is
//! a large share of a CPU step. Here weights and velocity are updated in place where the backend
//! lets them be (a flex tensor that owns its buffer), in fixed chunks spread over the rayon
//! threads. Each element sees the same operations, in the same order and precision, as in the
//! composed rule, so the result is bit-identical to it; only LARS's two norms are summed
//! differently (in f64, in a fixed chunk order, so the result does not depend on the threads).

use burn::tensor::{backend::Backend, DType, Tensor};
use rayon::prelude::*;
use rho_model::host_backend::{self, Real};

use super::SgdRule;

/// Elements per parallel task.
const CHUNK: usize = 1 << 15;

/// The float type a host update runs in for these tensors, or `None` where the composed rule
/// must run (another backend, another dtype, or a velocity of another dtype).
pub(super) fn host_dtype<B: Backend, const D: usize>(
    w: &Tensor<B, D>,
    g: &Tensor<B, D>,
    velocity: Option<&Tensor<B, D>>,
) -> Option<DType> {
    let dtype = w.dtype();
    let same = g.dtype() == dtype && velocity.is_none_or(|v| v.dtype() == dtype);
    (host_backend::is_host_backend::<B>() && host_backend::is_host_dtype(dtype) && same)
        .then_some(dtype)
}

/// The per-element coefficients of one step.
#[derive(Clone, Copy)]
struct Coefficients<T> {
    /// Weight decay applied to the gradient (0 when none: then it is skipped, as composed).
    decay: Option<T>,
    /// LARS's trust ratio λ multiplying the decayed gradient.
    lambda: Option<T>,
    /// μ where the velocity carries over; `None` on a fresh buffer (first step, or μ = 0).
    momentum: Option<T>,
    /// μ for the Nesterov look-ahead.
    nesterov: Option<T>,
    /// −lr.
    neg_lr: T,
}

impl<T: Real> Coefficients<T> {
    /// g' = (g + decay·w)·λ; v = μ·v + g' (or g'); w ← w − lr·(nesterov ? g' + μ·v : v).
    #[inline]
    fn apply(&self, w: &mut T, v: &mut T, g: T) {
        let mut g1 = match self.decay {
            Some(wd) => g + *w * wd,
            None => g,
        };
        if let Some(lambda) = self.lambda {
            g1 = g1 * lambda;
        }
        *v = match self.momentum {
            Some(mu) => *v * mu + g1,
            None => g1,
        };
        let update = match self.nesterov {
            Some(mu) => g1 + *v * mu,
            None => *v,
        };
        *w = *w + update * self.neg_lr;
    }
}

/// One step of `rule` on a host tensor in `T` (the caller checked [`host_dtype`]): the new
/// weights and velocity.
pub(super) fn step<B: Backend, T: Real, const D: usize>(
    rule: &SgdRule,
    lr: f64,
    w: Tensor<B, D>,
    g: Tensor<B, D>,
    velocity: Option<Tensor<B, D>>,
) -> (Tensor<B, D>, Tensor<B, D>) {
    let n = w.shape().num_elements();
    let carried = velocity.filter(|_| rule.momentum != 0.0);
    let fresh = carried.is_none();
    let velocity = carried.unwrap_or_else(|| Tensor::zeros(w.shape(), &w.device()));
    let g = g.into_primitive().tensor();
    let g = host_backend::read::<B, T>(&g);
    let (w, velocity) = host_backend::update_in_place::<B, T, D, _>(w, |ws| {
        let c = coefficients::<T>(rule, lr, ws, &g, fresh, D);
        host_backend::update_in_place::<B, T, D, _>(velocity, |vs| {
            debug_assert_eq!((ws.len(), vs.len(), g.len()), (n, n, n));
            ws.par_chunks_mut(CHUNK)
                .zip(vs.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|((w, v), g)| {
                    for ((w, v), g) in w.iter_mut().zip(v.iter_mut()).zip(g) {
                        c.apply(w, v, *g);
                    }
                });
        })
        .0
    });
    (w, velocity)
}

/// The step's coefficients; LARS's trust ratio from the norms of `w` and `g` (a tensor of more
/// than one dimension in a LARS group).
fn coefficients<T: Real>(
    rule: &SgdRule,
    lr: f64,
    w: &[T],
    g: &[T],
    fresh: bool,
    dims: usize,
) -> Coefficients<T> {
    let wd = rule.weight_decay;
    let (decay, lambda) = match rule.lars_trust {
        Some(eta) if dims > 1 => {
            let (wn, gn) = (norm(w), norm(g));
            // λ = η‖w‖ / (‖g‖ + wd‖w‖ + 1e-8); neither decay nor scaling when a norm is 0.
            if wn > 0.0 && gn > 0.0 {
                let lambda = eta * wn / (gn + wd * wn + 1e-8);
                (Some(T::from_f64(wd)), Some(T::from_f64(lambda)))
            } else {
                (None, None)
            }
        }
        Some(_) => (None, None),
        None if wd != 0.0 => (Some(T::from_f64(wd)), None),
        None => (None, None),
    };
    let mu = T::from_f64(rule.momentum);
    Coefficients {
        decay,
        lambda,
        momentum: (!fresh).then_some(mu),
        nesterov: rule.nesterov.then_some(mu),
        neg_lr: T::from_f64(-lr),
    }
}

/// ‖x‖₂, summed in f64 over fixed chunks in order.
fn norm<T: Real>(x: &[T]) -> f64 {
    let partials: Vec<f64> = x
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|v| v.to_f64() * v.to_f64()).sum::<f64>())
        .collect();
    partials.iter().sum::<f64>().sqrt()
}
