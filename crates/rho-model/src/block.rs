//! `ResBlock`: a bottleneck or basic residual block with its shortcut.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::config::{two_plus_one_mid, BlockKind, ConvFactor};
use crate::conv::{BnSettings, ConvBn};

/// What one block needs to know to build itself.
#[derive(Debug, Clone, Copy)]
pub struct BlockSpec {
    pub kind: BlockKind,
    pub factor: ConvFactor,
    pub cin: usize,
    pub inner: usize,
    pub cout: usize,
    pub temporal_kernel: usize,
    /// [t, h, w]
    pub stride: [usize; 3],
    /// Basic blocks: temporal kernel in both convs (torchvision) or only the first (PySlowFast).
    pub basic_temporal_both: bool,
    pub bn: BnSettings,
}

/// One residual block: `relu(branch2(x) + shortcut(x))`.
///
/// Bottleneck (PySlowFast `BottleneckTransform`, stride on the 3×3 conv):
/// a = kt×1×1 → BN → ReLU, b = 1×3×3 (stride) → BN → ReLU, c = 1×1×1 → BN.
/// Basic: a = kt×3×3 (stride) → BN → ReLU, b = (kt or 1)×3×3 → BN.
#[derive(Module, Debug)]
pub struct ResBlock<B: Backend> {
    pub a: ConvBn<B>,
    pub b: ConvBn<B>,
    pub c: Option<ConvBn<B>>,
    /// 1×1×1 projection + BN when the width or stride changes; identity otherwise.
    pub shortcut: Option<ConvBn<B>>,
}

impl<B: Backend> ResBlock<B> {
    pub fn new(spec: BlockSpec, device: &B::Device) -> Self {
        let BlockSpec {
            cin,
            inner,
            cout,
            temporal_kernel: kt,
            stride,
            bn,
            ..
        } = spec;
        let unit =
            |ci: usize, co: usize, k: [usize; 3], s: [usize; 3], mid_from: (usize, usize)| {
                let factorise = spec.factor == ConvFactor::TwoPlusOne && k[0] > 1 && k[1] > 1;
                if factorise {
                    let mid = two_plus_one_mid(mid_from.0, mid_from.1, k[0], k[1]);
                    ConvBn::factorised(ci, mid, co, k, s, bn, device)
                } else {
                    ConvBn::full(ci, co, k, s, bn, device)
                }
            };
        let (a, b, c) = match spec.kind {
            BlockKind::Bottleneck => (
                unit(cin, inner, [kt, 1, 1], [1, 1, 1], (cin, inner)),
                unit(inner, inner, [1, 3, 3], stride, (inner, inner)),
                Some(unit(inner, cout, [1, 1, 1], [1, 1, 1], (inner, cout))),
            ),
            BlockKind::Basic => {
                let kt_b = if spec.basic_temporal_both { kt } else { 1 };
                // torchvision computes one `midplanes` from (cin, cout) for both convs.
                (
                    unit(cin, cout, [kt, 3, 3], stride, (cin, cout)),
                    unit(cout, cout, [kt_b, 3, 3], [1, 1, 1], (cin, cout)),
                    None,
                )
            }
        };
        let shortcut = (cin != cout || stride != [1, 1, 1])
            .then(|| ConvBn::full(cin, cout, [1, 1, 1], stride, bn, device));
        Self { a, b, c, shortcut }
    }

    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let skip = match &self.shortcut {
            Some(s) => s.forward(x.clone()),
            None => x.clone(),
        };
        let y = self.a.forward_fused(x, None, true);
        match &self.c {
            Some(c) => c.forward_fused(self.b.forward_fused(y, None, true), Some(skip), true),
            None => self.b.forward_fused(y, Some(skip), true),
        }
    }
}
