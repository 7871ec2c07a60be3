//! `ConvBn`: a convolution (full 3D, or factorised (2+1)D) followed by BatchNorm.
//!
//! Every convolution of a rho backbone is one of these, so weight naming, init and the (2+1)D
//! factorisation live in one place.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv3d, Conv3dConfig};
use burn::nn::PaddingConfig3d;
use burn::tensor::{backend::Backend, Distribution, Tensor};

use crate::cpu_conv::{conv3d_forward_in, ConvStrategy};
use crate::norm::BatchNorm;
use crate::precision::Precision;

/// Hyper-parameters shared by every BatchNorm of a network.
#[derive(Debug, Clone, Copy)]
pub struct BnSettings {
    pub eps: f64,
    pub momentum: f64,
}

/// A bias-free Conv3d with symmetric "same-style" padding k/2, He (fan-out) initialised.
pub fn conv3d<B: Backend>(
    cin: usize,
    cout: usize,
    kernel: [usize; 3],
    stride: [usize; 3],
    device: &B::Device,
) -> Conv3d<B> {
    let mut conv = Conv3dConfig::new([cin, cout], kernel)
        .with_stride(stride)
        .with_padding(PaddingConfig3d::Explicit(
            kernel[0] / 2,
            kernel[1] / 2,
            kernel[2] / 2,
        ))
        .with_bias(false)
        .init(device);
    // MSRA fill as in PySlowFast's `init_weights`: N(0, sqrt(2 / fan_out)), fan_out = C_out·k.
    let fan_out = cout * kernel.iter().product::<usize>();
    let std = (2.0 / fan_out as f64).sqrt();
    let shape = conv.weight.dims();
    conv.weight = Param::from_tensor(Tensor::random(
        shape,
        Distribution::Normal(0.0, std),
        device,
    ));
    conv
}

/// The spatial half of a (2+1)D convolution: 1×k×k conv, BN and ReLU before the temporal conv.
#[derive(Module, Debug)]
pub struct SpatialConv<B: Backend> {
    pub conv: Conv3d<B>,
    pub bn: BatchNorm<B>,
}

/// Convolution + BatchNorm. When `spatial` is present the unit is R(2+1)D: `spatial` first,
/// then `conv` is the k_t×1×1 temporal convolution.
#[derive(Module, Debug)]
pub struct ConvBn<B: Backend> {
    pub spatial: Option<SpatialConv<B>>,
    pub conv: Conv3d<B>,
    pub bn: BatchNorm<B>,
    /// How the convolutions run, fixed at construction by the backend's type.
    #[module(skip)]
    pub strategy: ConvStrategy,
    /// The dtype the convolutions compute in; BatchNorm always runs in the network's own.
    #[module(skip)]
    pub precision: Precision,
}

impl<B: Backend> ConvBn<B> {
    /// A full 3D conv.
    pub fn full(
        cin: usize,
        cout: usize,
        kernel: [usize; 3],
        stride: [usize; 3],
        bn: BnSettings,
        device: &B::Device,
    ) -> Self {
        Self {
            spatial: None,
            conv: conv3d(cin, cout, kernel, stride, device),
            bn: BatchNorm::new(cout, bn.eps, bn.momentum, device),
            strategy: ConvStrategy::for_backend::<B>(),
            precision: Precision::F32,
        }
    }

    /// A (2+1)D pair with `mid` channels between the spatial and the temporal conv.
    #[allow(clippy::too_many_arguments)]
    pub fn factorised(
        cin: usize,
        mid: usize,
        cout: usize,
        kernel: [usize; 3],
        stride: [usize; 3],
        bn: BnSettings,
        device: &B::Device,
    ) -> Self {
        let spatial = SpatialConv {
            conv: conv3d(
                cin,
                mid,
                [1, kernel[1], kernel[2]],
                [1, stride[1], stride[2]],
                device,
            ),
            bn: BatchNorm::new(mid, bn.eps, bn.momentum, device),
        };
        Self {
            spatial: Some(spatial),
            conv: conv3d(mid, cout, [kernel[0], 1, 1], [stride[0], 1, 1], device),
            bn: BatchNorm::new(cout, bn.eps, bn.momentum, device),
            strategy: ConvStrategy::for_backend::<B>(),
            precision: Precision::F32,
        }
    }

    /// conv → BN (no activation; the caller decides).
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        self.forward_fused(x, None, false)
    }

    /// conv → BN → (+ skip) → (ReLU), the BatchNorm, residual and activation in one pass where
    /// the host kernels serve.
    pub fn forward_fused(
        &self,
        x: Tensor<B, 5>,
        skip: Option<Tensor<B, 5>>,
        apply_relu: bool,
    ) -> Tensor<B, 5> {
        let (strategy, precision) = (self.strategy, self.precision);
        let conv = |c: &Conv3d<B>, x| conv3d_forward_in(c, x, strategy, precision);
        let x = match &self.spatial {
            Some(s) => s.bn.forward_fused(conv(&s.conv, x), None, true),
            None => x,
        };
        self.bn.forward_fused(conv(&self.conv, x), skip, apply_relu)
    }

    pub fn out_channels(&self) -> usize {
        self.bn.channels()
    }
}
