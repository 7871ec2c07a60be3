//! Convolutions on the CPU backends as GEMMs over an im2col matrix, forward and backward.
//!
//! Burn 0.21's flex and ndarray backends do not implement `conv3d_x_backward` /
//! `conv3d_weight_backward`; the defaults (a transposed convolution, and a convolution with
//! batch and channels swapped) cost 3–7× the forward pass. Here everything is GEMMs over im2col
//! columns, as in PyTorch's `slow_conv3d`: dW = Σ dy·colsᵀ, and dX either col2im(Wᵀ·dy) or, for
//! stride 1, a forward convolution of dy with the flipped kernel (docs/architecture.md, "CPU
//! convolutions"). The backend is recognised by its type (`TypeId`), once, when a network
//! asks for its [`ConvStrategy`]; GPU backends keep their own kernels.

mod geometry;
mod kernels;
mod tracked;

use std::any::TypeId;

use burn::nn::conv::Conv3d;
use burn::nn::PaddingConfig3d;
use burn::tensor::ops::{ConvOptions, FloatTensor};
use burn::tensor::{backend::Backend, Tensor};

use crate::host_backend::{is_host_backend, prim, tensor};

pub use geometry::{ConvGeometry, COLUMN_BUDGET_BYTES};
pub use kernels::{backward as host_backward, forward as host_forward, Needs, Real};

/// How a network's convolutions are computed, fixed by the backend's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvStrategy {
    /// The backend's conv3d (GPU backends, and dtypes the host kernels do not take).
    Native,
    /// The host GEMM kernels, forward and backward (flex and ndarray, with or without autodiff).
    HostGemm,
}

impl ConvStrategy {
    pub fn for_backend<B: Backend>() -> Self {
        if is_host_backend::<B>() {
            ConvStrategy::HostGemm
        } else {
            ConvStrategy::Native
        }
    }
}

/// `conv.forward(x)`, through the host kernels when `strategy` is `HostGemm` and the conv is
/// one they take (groups 1, dilation 1, no bias, explicit padding, f32/f64).
pub fn conv3d_forward<B: Backend>(
    conv: &Conv3d<B>,
    x: Tensor<B, 5>,
    strategy: ConvStrategy,
) -> Tensor<B, 5> {
    if strategy == ConvStrategy::Native {
        return conv.forward(x);
    }
    let w = conv.weight.val();
    let Some(g) = geometry(conv, &x, &w) else {
        return conv.forward(x);
    };
    match host_conv(x, w, &g) {
        Ok(y) => y,
        Err((x, _)) => conv.forward(x),
    }
}

/// [`conv3d_forward`] in `precision`: the operands rounded to the compute dtype, the result
/// rounded and returned in `x`'s dtype. On the host kernels the rounding is explicit and the
/// products accumulate in f32, as a bf16/f16 tensor-core kernel computes; on other backends the
/// operands are cast and the backend's own low-precision convolution runs. Padding other than
/// explicit or valid stays in full precision (rho's networks use explicit padding only).
pub fn conv3d_forward_in<B: Backend>(
    conv: &Conv3d<B>,
    x: Tensor<B, 5>,
    strategy: ConvStrategy,
    precision: crate::Precision,
) -> Tensor<B, 5> {
    let Some(low) = precision.low_dtype() else {
        return conv3d_forward(conv, x, strategy);
    };
    let Some(padding) = fixed_padding(conv) else {
        return conv3d_forward(conv, x, strategy);
    };
    let full = x.dtype();
    let (mut x, mut w) = (x, conv.weight.val());
    if strategy == ConvStrategy::HostGemm && conv.bias.is_none() {
        let (xq, wq) = (precision.round(x), precision.round(w));
        match geometry(conv, &xq, &wq) {
            Some(g) => match host_conv(xq, wq, &g) {
                Ok(y) => return precision.round(y),
                Err(pair) => (x, w) = pair,
            },
            None => (x, w) = (xq, wq),
        }
    }
    let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
    let bias = conv.bias.as_ref().map(|b| b.val().cast(low));
    burn::tensor::module::conv3d(x.cast(low), w.cast(low), bias, options).cast(full)
}

/// The padding when it does not depend on the input's size (explicit or valid).
fn fixed_padding<B: Backend>(conv: &Conv3d<B>) -> Option<[usize; 3]> {
    match conv.padding {
        PaddingConfig3d::Explicit(a, b, c) => Some([a, b, c]),
        PaddingConfig3d::Valid => Some([0, 0, 0]),
        _ => None,
    }
}

fn geometry<B: Backend>(
    conv: &Conv3d<B>,
    x: &Tensor<B, 5>,
    w: &Tensor<B, 5>,
) -> Option<ConvGeometry> {
    let padding = fixed_padding(conv)?;
    let [n, c, d, h, wd] = x.dims();
    let [co, ci, kd, kh, kw] = w.dims();
    let plain = conv.groups == 1 && conv.dilation == [1, 1, 1] && conv.bias.is_none();
    let dtype_ok = tracked::is_host_dtype(x.dtype()) && x.dtype() == w.dtype();
    let g = ConvGeometry {
        batch: n,
        in_channels: c,
        input: [d, h, wd],
        out_channels: co,
        kernel: [kd, kh, kw],
        stride: conv.stride,
        padding,
    };
    (plain && dtype_ok && ci == c && g.output().is_some()).then_some(g)
}

type Pair<B> = (Tensor<B, 5>, Tensor<B, 5>);

/// The host convolution for whichever known backend `B` is; the inputs back when none.
fn host_conv<B: Backend>(
    x: Tensor<B, 5>,
    w: Tensor<B, 5>,
    g: &ConvGeometry,
) -> Result<Tensor<B, 5>, Pair<B>> {
    let done: Result<Tensor<B, 5>, Pair<B>> = Err((x, w));
    #[cfg(feature = "flex")]
    let done = done.or_else(|p| on::<B, burn::backend::Flex>(p, g));
    #[cfg(feature = "ndarray")]
    let done = done
        .or_else(|p| on::<B, burn::backend::NdArray<f32>>(p, g))
        .or_else(|p| on::<B, burn::backend::NdArray<f64>>(p, g));
    done
}

/// The convolution when `B` is `C` or `Autodiff<C>`; the inputs back otherwise.
#[allow(dead_code)]
fn on<B: Backend, C: Backend>(pair: Pair<B>, g: &ConvGeometry) -> Result<Tensor<B, 5>, Pair<B>> {
    type Ad<C> = FloatTensor<burn_autodiff::Autodiff<C>>;
    let id = TypeId::of::<B>();
    if id == TypeId::of::<C>() {
        let (x, w) = (
            prim::<B, 5, FloatTensor<C>>(pair.0),
            prim::<B, 5, FloatTensor<C>>(pair.1),
        );
        Ok(tensor::<B, 5, _>(tracked::forward::<C>(x, w, g)))
    } else if id == TypeId::of::<burn_autodiff::Autodiff<C>>() {
        let (x, w) = (prim::<B, 5, Ad<C>>(pair.0), prim::<B, 5, Ad<C>>(pair.1));
        Ok(tensor::<B, 5, _>(tracked::forward_tracked::<C>(x, w, g)))
    } else {
        Err(pair)
    }
}

#[cfg(test)]
mod tests;
