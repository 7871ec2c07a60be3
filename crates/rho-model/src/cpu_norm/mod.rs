//! BatchNorm's training-mode forward and backward on the CPU backends as two fused, parallel
//! passes each (docs/architecture.md, "CPU BatchNorm").
//!
//! Composed from tensor ops, a train-mode BatchNorm records about a dozen passes over its input
//! (sums, centring, squaring, scaling, shifting, and their gradients), each single-threaded on
//! flex; in a 3D CNN step that cost as much as a third of the convolutions. Here the statistics
//! take two passes per channel in parallel, the output one, and the backward two. Which path a
//! BatchNorm takes is fixed when it is built, from the backend's type, as for the convolutions.

mod kernels;
mod tracked;

use std::any::TypeId;

use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, Tensor};

pub use kernels::{Moments, NormShape};

use crate::host_backend::{is_host_backend, is_host_dtype, prim, tensor};

/// How a BatchNorm computes its training-mode statistics and gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormStrategy {
    /// Burn tensor ops (any backend; also every synchronised or grouped BatchNorm).
    Composed,
    /// The fused host kernels (flex and ndarray, with or without autodiff; f32 and f64).
    Host,
}

impl NormStrategy {
    pub fn for_backend<B: Backend>() -> Self {
        if is_host_backend::<B>() {
            NormStrategy::Host
        } else {
            NormStrategy::Composed
        }
    }
}

/// The inputs of a fused BatchNorm: x [n, c, s], γ, β and an optional residual like x.
pub struct NormInputs<B: Backend> {
    pub x: Tensor<B, 3>,
    pub gamma: Tensor<B, 1>,
    pub beta: Tensor<B, 1>,
    pub skip: Option<Tensor<B, 3>>,
}

/// relu?(BatchNorm(x) + skip?) in train mode on the host kernels, with the batch statistics;
/// the inputs back when `B` is not a host backend or the dtypes are not one of f32/f64.
pub fn batch_norm_train<B: Backend>(
    t: NormInputs<B>,
    relu: bool,
    eps: f64,
) -> Result<(Tensor<B, 3>, Moments), NormInputs<B>> {
    let dtype = t.x.dtype();
    let same = t.gamma.dtype() == dtype
        && t.beta.dtype() == dtype
        && t.skip
            .as_ref()
            .is_none_or(|s| s.dtype() == dtype && s.dims() == t.x.dims());
    if !is_host_dtype(dtype) || !same {
        return Err(t);
    }
    let done: Result<(Tensor<B, 3>, Moments), NormInputs<B>> = Err(t);
    #[cfg(feature = "flex")]
    let done = done.or_else(|t| on::<B, burn::backend::Flex>(t, relu, eps));
    #[cfg(feature = "ndarray")]
    let done = done
        .or_else(|t| on::<B, burn::backend::NdArray<f32>>(t, relu, eps))
        .or_else(|t| on::<B, burn::backend::NdArray<f64>>(t, relu, eps));
    done
}

/// The host BatchNorm when `B` is `C` or `Autodiff<C>`; the inputs back otherwise.
#[allow(dead_code)]
fn on<B: Backend, C: Backend>(
    t: NormInputs<B>,
    relu: bool,
    eps: f64,
) -> Result<(Tensor<B, 3>, Moments), NormInputs<B>> {
    type Ad<C> = FloatTensor<burn_autodiff::Autodiff<C>>;
    let id = TypeId::of::<B>();
    if id == TypeId::of::<C>() {
        let (y, m) = tracked::forward_plain::<C>(
            prim::<B, 3, FloatTensor<C>>(t.x),
            prim::<B, 1, FloatTensor<C>>(t.gamma),
            prim::<B, 1, FloatTensor<C>>(t.beta),
            t.skip.map(prim::<B, 3, FloatTensor<C>>),
            relu,
            eps,
        );
        Ok((tensor::<B, 3, _>(y), m))
    } else if id == TypeId::of::<burn_autodiff::Autodiff<C>>() {
        let inputs = tracked::TrackedInputs {
            x: prim::<B, 3, Ad<C>>(t.x),
            gamma: prim::<B, 1, Ad<C>>(t.gamma),
            beta: prim::<B, 1, Ad<C>>(t.beta),
            skip: t.skip.map(prim::<B, 3, Ad<C>>),
        };
        let (y, m) = tracked::forward_tracked::<C>(inputs, relu, eps);
        Ok((tensor::<B, 3, _>(y), m))
    } else {
        Err(t)
    }
}

#[cfg(test)]
mod tests;
