//! Convolutions without a spatial extent (1×1×1 and k_t×1×1) as one batched matmul.
//!
//! On Burn 0.21's CPU backends the backward pass of `conv3d` goes through a transposed
//! convolution and a convolution with swapped dims, 5–15× the cost of the forward pass. Most of
//! a bottleneck ResNet's FLOPs sit in 1×1×1 and k_t×1×1 convs, which are plain matrix products
//! over a temporal im2col (k_t contiguous slices along T): written that way, autodiff's backward
//! is two GEMMs. Spatial kernels keep the backend's native convolution. GPU backends keep native
//! convolutions everywhere (their implicit-GEMM kernels are already good).

use burn::nn::conv::Conv3d;
use burn::nn::PaddingConfig3d;
use burn::tensor::ops::PadMode;
use burn::tensor::{backend::Backend, s, Tensor};

/// How convolutions are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvStrategy {
    /// The backend's conv3d everywhere.
    Native,
    /// Matmul for convs without a spatial extent, native conv for the rest.
    GemmPointwise,
}

impl ConvStrategy {
    /// `GemmPointwise` on the CPU backends (flex, ndarray, also under autodiff), `Native`
    /// elsewhere: decided once per backend type, from the type itself, and cached.
    pub fn for_backend<B: Backend>() -> Self {
        use std::any::TypeId;
        use std::collections::HashMap;
        use std::sync::{LazyLock, RwLock};
        static DECIDED: LazyLock<RwLock<HashMap<TypeId, ConvStrategy>>> =
            LazyLock::new(Default::default);
        let id = TypeId::of::<B>();
        if let Some(s) = DECIDED.read().ok().and_then(|m| m.get(&id).copied()) {
            return s;
        }
        let ty = std::any::type_name::<B>();
        let cpu = ["burn_flex::", "burn_ndarray::"]
            .iter()
            .any(|c| ty.contains(c));
        let s = if cpu {
            ConvStrategy::GemmPointwise
        } else {
            ConvStrategy::Native
        };
        if let Ok(mut m) = DECIDED.write() {
            m.insert(id, s);
        }
        s
    }
}

/// `conv.forward(x)`, computed as a matmul when `strategy` allows and the kernel is k_t×1×1.
pub fn conv3d_forward<B: Backend>(
    conv: &Conv3d<B>,
    x: Tensor<B, 5>,
    strategy: ConvStrategy,
) -> Tensor<B, 5> {
    let k = conv.kernel_size;
    let eligible = strategy == ConvStrategy::GemmPointwise
        && k[1] == 1
        && k[2] == 1
        && conv.groups == 1
        && conv.dilation == [1, 1, 1]
        && conv.bias.is_none();
    let pt = match &conv.padding {
        PaddingConfig3d::Explicit(t, 0, 0) => *t,
        PaddingConfig3d::Valid => 0,
        _ => return conv.forward(x),
    };
    if !eligible {
        return conv.forward(x);
    }
    temporal_matmul_conv(x, conv.weight.val(), k[0], pt, conv.stride)
}

/// y[n, o, t, h, w] = Σ_{c, dt} W[o, c, dt] · x_pad[n, c, t·s_t + dt, h·s_h, w·s_w]
fn temporal_matmul_conv<B: Backend>(
    x: Tensor<B, 5>,
    weight: Tensor<B, 5>,
    kt: usize,
    pt: usize,
    stride: [usize; 3],
) -> Tensor<B, 5> {
    let [st, sh, sw] = stride;
    let x = if sh > 1 || sw > 1 {
        x.slice(s![.., .., .., ..;sh, ..;sw])
    } else {
        x
    };
    let x = if pt > 0 {
        x.pad(
            [(0, 0), (0, 0), (pt, pt), (0, 0), (0, 0)],
            PadMode::Constant(0.0),
        )
    } else {
        x
    };
    let [n, ci, t_pad, ho, wo] = x.dims();
    let to = (t_pad - kt) / st + 1;
    let spatial = ho * wo;
    let cols = if kt == 1 && st == 1 {
        x.reshape([n, ci, to * spatial])
    } else {
        let taps: Vec<Tensor<B, 4>> = (0..kt)
            .map(|dt| {
                let tap = x
                    .clone()
                    .slice(s![.., .., dt..dt + (to - 1) * st + 1;st, .., ..]);
                tap.reshape([n, ci, 1, to * spatial])
            })
            .collect();
        Tensor::cat(taps, 2).reshape([n, ci * kt, to * spatial])
    };
    let co = weight.dims()[0];
    let w = weight.reshape([1, co, ci * kt]);
    w.matmul(cols).reshape([n, co, to, ho, wo])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::conv3d;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{Distribution, Tolerance};

    type AB = Autodiff<Flex>;

    /// The matmul form against the backend's conv3d: values, dX and dW.
    #[test]
    fn matches_native_conv_forward_and_backward() {
        let dev = Default::default();
        for (kt, stride, t, h) in [
            (1, [1, 1, 1], 4, 6),
            (1, [1, 2, 2], 4, 7),
            (3, [1, 1, 1], 5, 4),
            (3, [2, 2, 2], 6, 5),
            (5, [1, 1, 1], 3, 3),
        ] {
            let conv = conv3d::<AB>(6, 5, [kt, 1, 1], stride, &dev);
            let x = Tensor::<AB, 5>::random([2, 6, t, h, h], Distribution::Normal(0.0, 1.0), &dev)
                .require_grad();
            let probe = Tensor::<AB, 5>::random(
                conv.forward(x.clone()).dims(),
                Distribution::Normal(0.0, 1.0),
                &dev,
            );
            let y1 = conv.forward(x.clone());
            let y2 = conv3d_forward(&conv, x.clone(), ConvStrategy::GemmPointwise);
            y2.clone()
                .into_data()
                .assert_approx_eq::<f32>(&y1.clone().into_data(), Tolerance::absolute(1e-4));
            let g1 = (y1 * probe.clone()).sum().backward();
            let g2 = (y2 * probe).sum().backward();
            let tol = Tolerance::absolute(1e-3);
            x.grad(&g2)
                .unwrap()
                .into_data()
                .assert_approx_eq::<f32>(&x.grad(&g1).unwrap().into_data(), tol);
            let w = conv.weight.val();
            w.grad(&g2)
                .unwrap()
                .into_data()
                .assert_approx_eq::<f32>(&w.grad(&g1).unwrap().into_data(), tol);
        }
    }
}

#[cfg(test)]
mod strategy_tests {
    use super::ConvStrategy;

    #[test]
    fn cpu_backends_use_the_gemm_path_decided_by_type() {
        type F = burn::backend::Flex;
        assert_eq!(
            ConvStrategy::for_backend::<F>(),
            ConvStrategy::GemmPointwise
        );
        assert_eq!(
            ConvStrategy::for_backend::<burn::backend::Autodiff<F>>(),
            ConvStrategy::GemmPointwise
        );
    }
}
