//! `ResNet3dConfig`: one description for every 3D ResNet rho builds, plus the named presets.
//!
//! A network is a stem, a list of residual stages and an optional classification head, the way
//! pytorchvideo's `create_resnet` composes them. Each stage says its depth, its widths, the
//! temporal kernel of every block and its strides, so the paper's Slow R-50 (temporal kernels only
//! in res4/res5), torchvision's R3D-18 (3×3×3 everywhere, strides in time) and R(2+1)D-18
//! (factorised convolutions) are all the same code.

use burn::config::Config;

use crate::error::ModelError;

/// Residual block type.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two k×3×3 convolutions (ResNet-18/34).
    Basic,
    /// kt×1×1 → 1×3×3 → 1×1×1 with a 4× wider output (ResNet-50/101).
    Bottleneck,
}

/// How a k_t×k×k convolution is realised.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum ConvFactor {
    /// One full 3D convolution.
    Full,
    /// R(2+1)D: a 1×k×k spatial conv to `mid` channels, BN, ReLU, then a k_t×1×1 temporal conv,
    /// with `mid` chosen (as torchvision does) so the pair has the parameters of the full conv.
    TwoPlusOne,
}

/// The stem: one convolution (optionally factorised), BN, ReLU and an optional 1×3×3 max-pool.
#[derive(Config, Debug)]
pub struct StemConfig {
    /// Output channels.
    pub width: usize,
    /// Kernel [t, h, w].
    pub kernel: [usize; 3],
    /// Stride [t, h, w].
    pub stride: [usize; 3],
    /// Max-pool 1×3×3, stride (1,2,2), pad (0,1,1) after the activation.
    #[config(default = true)]
    pub max_pool: bool,
    /// Full or (2+1)D convolution.
    #[config(default = "ConvFactor::Full")]
    pub factor: ConvFactor,
    /// Channels between the spatial and the temporal conv when factorised (torchvision: 45).
    #[config(default = "None")]
    pub factor_mid: Option<usize>,
}

/// One residual stage (res2…res5).
#[derive(Config, Debug)]
pub struct StageConfig {
    /// Number of blocks.
    pub depth: usize,
    /// Bottleneck inner width (or the basic block's width).
    pub inner: usize,
    /// Output width (4 × inner for bottlenecks, inner for basic blocks).
    pub out: usize,
    /// Temporal kernel size of every block's temporal conv (bottleneck: conv a; basic: both).
    pub temporal_kernel: usize,
    /// Spatial stride of the first block.
    pub spatial_stride: usize,
    /// Temporal stride of the first block (1 for Slow networks, 2 in torchvision's R3D stages 2–4).
    #[config(default = 1)]
    pub temporal_stride: usize,
}

/// A complete 3D ResNet.
#[derive(Config, Debug)]
pub struct ResNet3dConfig {
    /// Name used in messages and exported metadata.
    pub name: String,
    /// Input channels (3 for RGB).
    #[config(default = 3)]
    pub in_channels: usize,
    pub stem: StemConfig,
    pub stages: Vec<StageConfig>,
    pub block: BlockKind,
    #[config(default = "ConvFactor::Full")]
    pub factor: ConvFactor,
    /// Basic blocks: use the temporal kernel in both convs (torchvision R3D) rather than only in
    /// the first (PySlowFast's `BasicTransform`).
    #[config(default = false)]
    pub basic_temporal_both: bool,
    /// Number of classes of the optional head; `None` means features only.
    #[config(default = "None")]
    pub num_classes: Option<usize>,
    /// Dropout before the head's linear layer.
    #[config(default = 0.5)]
    pub dropout: f64,
    /// BatchNorm epsilon (PyTorch default).
    #[config(default = 1e-5)]
    pub bn_eps: f64,
    /// BatchNorm momentum in PyTorch's convention (new = (1-m)·old + m·batch).
    #[config(default = 0.1)]
    pub bn_momentum: f64,
}

impl ResNet3dConfig {
    /// A preset by name (see [`crate::presets`]).
    pub fn preset(name: &str) -> Result<Self, ModelError> {
        Ok((crate::presets::find(name)?.build)())
    }

    /// The Slow pathway of SlowFast (paper Table 17): a 1×7×7 stem with max-pool, no temporal
    /// stride anywhere, temporal kernels of 3 only in res4 and res5.
    pub fn slow_resnet(
        name: &str,
        depths: [usize; 4],
        stem_width: usize,
        block: BlockKind,
    ) -> Self {
        let expansion = match block {
            BlockKind::Bottleneck => 4,
            BlockKind::Basic => 1,
        };
        let stages = (0..4)
            .map(|i| {
                let inner = stem_width << i;
                StageConfig::new(
                    depths[i],
                    inner,
                    inner * expansion,
                    if i >= 2 { 3 } else { 1 },
                    if i == 0 { 1 } else { 2 },
                )
            })
            .collect();
        let stem = StemConfig::new(stem_width, [1, 7, 7], [1, 2, 2]);
        Self::new(name.to_string(), stem, stages, block)
    }

    /// torchvision's `r3d_18` / `r2plus1d_18` (VideoResNet): a stem without max-pool, 3×3×3
    /// basic blocks, and stride 2 in time and space at the start of stages 2–4.
    pub fn torchvision_r18(name: &str, width: usize, factor: ConvFactor) -> Self {
        let stages = (0..4)
            .map(|i| {
                let w = width << i;
                let s = if i == 0 { 1 } else { 2 };
                StageConfig::new(2, w, w, 3, s).with_temporal_stride(s)
            })
            .collect();
        let stem = match factor {
            ConvFactor::Full => StemConfig::new(width, [3, 7, 7], [1, 2, 2]),
            ConvFactor::TwoPlusOne => StemConfig::new(width, [3, 7, 7], [1, 2, 2])
                .with_factor(ConvFactor::TwoPlusOne)
                .with_factor_mid(Some(width * 45 / 64)),
        }
        .with_max_pool(false);
        Self::new(name.to_string(), stem, stages, BlockKind::Basic)
            .with_factor(factor)
            .with_basic_temporal_both(true)
    }

    /// Width of the pooled feature vector.
    pub fn feature_dim(&self) -> usize {
        self.stages.last().map(|s| s.out).unwrap_or(self.stem.width)
    }

    /// Checks that the description can build a network.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Config(format!("{}: {m}", self.name)));
        if self.in_channels == 0 || self.stem.width == 0 {
            return bad("channels must be positive".into());
        }
        if self.stages.is_empty() {
            return bad("at least one stage is needed".into());
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.depth == 0 || s.inner == 0 || s.out == 0 {
                return bad(format!("stage {i} has a zero depth or width"));
            }
            if s.temporal_kernel % 2 == 0 {
                return bad(format!(
                    "stage {i}: temporal kernel {} must be odd (symmetric padding)",
                    s.temporal_kernel
                ));
            }
            if s.spatial_stride == 0 || s.temporal_stride == 0 {
                return bad(format!("stage {i}: strides must be at least 1"));
            }
            if self.block == BlockKind::Basic && s.inner != s.out {
                return bad(format!("stage {i}: basic blocks need inner == out"));
            }
        }
        if self.stem.kernel.iter().any(|k| k % 2 == 0) {
            return bad("stem kernel sizes must be odd".into());
        }
        if self.stem.factor == ConvFactor::TwoPlusOne && self.stem.factor_mid.is_none() {
            return bad("a factorised stem needs `factor_mid`".into());
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        Ok(())
    }

    /// Total downsampling [T, H, W] from the input to the res5 map. Smaller inputs still run
    /// (padding keeps every map at least 1×1×1), but then res5 sees a single position.
    pub fn total_stride(&self) -> [usize; 3] {
        let mut t = self.stem.stride[0];
        let mut s = self.stem.stride[1] * if self.stem.max_pool { 2 } else { 1 };
        for st in &self.stages {
            t *= st.temporal_stride;
            s *= st.spatial_stride;
        }
        [t, s, s]
    }
}

impl ResNet3dConfig {
    /// Output elements of every conv+BN unit for one clip of `frames` × `size`², the quantity
    /// that training memory grows with (autodiff keeps a few tensors of each unit's size).
    pub fn activation_elements(&self, frames: usize, size: usize) -> usize {
        let down = |x: usize, s: usize| x.div_ceil(s.max(1));
        let (mut t, mut h) = (
            down(frames, self.stem.stride[0]),
            down(size, self.stem.stride[1]),
        );
        let factorised = |c: usize| {
            if self.factor == ConvFactor::TwoPlusOne {
                2 * c
            } else {
                c
            }
        };
        let mut total = factorised(self.stem.width) * t * h * h;
        if self.stem.max_pool {
            h = down(h, 2);
            total += self.stem.width * t * h * h;
        }
        let mut cin = self.stem.width;
        for st in &self.stages {
            for d in 0..st.depth {
                let (ts, ss) = if d == 0 {
                    (st.temporal_stride, st.spatial_stride)
                } else {
                    (1, 1)
                };
                let (t_out, h_out) = (down(t, ts), down(h, ss));
                let per = t_out * h_out * h_out;
                total += match self.block {
                    // a (inner, at the input's spatial size), b (inner), c (out).
                    BlockKind::Bottleneck => {
                        st.inner * t * h * h + factorised(st.inner) * per + st.out * per
                    }
                    BlockKind::Basic => factorised(st.inner) * per + factorised(st.out) * per,
                };
                if d == 0 && (cin != st.out || ts > 1 || ss > 1) {
                    total += st.out * per; // projection shortcut
                }
                total += st.out * per; // residual sum
                (t, h, cin) = (t_out, h_out, st.out);
            }
        }
        total
    }
}

/// torchvision's R(2+1)D mid-channel rule: keep the parameter count of the full k_t×k×k conv.
pub(crate) fn two_plus_one_mid(cin: usize, cout: usize, kt: usize, k: usize) -> usize {
    (cin * cout * kt * k * k) / (cin * k * k + kt * cout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_validates() {
        for p in crate::presets::presets() {
            ResNet3dConfig::preset(p.name).unwrap().validate().unwrap();
        }
        let e = ResNet3dConfig::preset("slow_r51").unwrap_err().to_string();
        assert!(e.contains("slow_r51") && e.contains("slow_r50"), "{e}");
    }

    #[test]
    fn slow_r50_matches_the_layer_table() {
        let c = ResNet3dConfig::preset("slow_r50").unwrap();
        let depths: Vec<_> = c.stages.iter().map(|s| s.depth).collect();
        let outs: Vec<_> = c.stages.iter().map(|s| s.out).collect();
        let tk: Vec<_> = c.stages.iter().map(|s| s.temporal_kernel).collect();
        assert_eq!(depths, [3, 4, 6, 3]);
        assert_eq!(outs, [256, 512, 1024, 2048]);
        assert_eq!(tk, [1, 1, 3, 3]);
        assert_eq!(c.feature_dim(), 2048);
        assert_eq!(c.total_stride(), [1, 32, 32]);
    }

    #[test]
    fn torchvision_mid_channels() {
        // torchvision r2plus1d_18: layer1 midplanes 144, stem 45.
        assert_eq!(two_plus_one_mid(64, 64, 3, 3), 144);
        assert_eq!(two_plus_one_mid(64, 128, 3, 3), 230);
        assert_eq!(two_plus_one_mid(128, 128, 3, 3), 288);
    }
}
