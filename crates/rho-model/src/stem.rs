//! `Stem`: the first convolution, BN, ReLU and (for Slow networks) a 1×3×3 max-pool.

use burn::module::Module;
use burn::tensor::module::max_pool2d;
use burn::tensor::{backend::Backend, Tensor};

use crate::config::{ConvFactor, StemConfig};
use crate::conv::{BnSettings, ConvBn};

#[derive(Module, Debug)]
pub struct Stem<B: Backend> {
    pub unit: ConvBn<B>,
    /// Max-pool 1×3×3, stride (1,2,2), padding (0,1,1).
    pub max_pool: bool,
}

impl<B: Backend> Stem<B> {
    pub fn new(cfg: &StemConfig, cin: usize, bn: BnSettings, device: &B::Device) -> Self {
        let unit = match (cfg.factor, cfg.factor_mid) {
            (ConvFactor::TwoPlusOne, Some(mid)) => {
                ConvBn::factorised(cin, mid, cfg.width, cfg.kernel, cfg.stride, bn, device)
            }
            _ => ConvBn::full(cin, cfg.width, cfg.kernel, cfg.stride, bn, device),
        };
        Self {
            unit,
            max_pool: cfg.max_pool,
        }
    }

    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let x = self.unit.forward_fused(x, None, true);
        if self.max_pool {
            max_pool_1x3x3(x)
        } else {
            x
        }
    }
}

/// Burn 0.21 has no 3D pooling; a 1×k×k pool is a 2D pool over frames folded into the batch.
fn max_pool_1x3x3<B: Backend>(x: Tensor<B, 5>) -> Tensor<B, 5> {
    let [n, c, t, h, w] = x.dims();
    let frames = x.permute([0, 2, 1, 3, 4]).reshape([n * t, c, h, w]);
    let pooled = max_pool2d(frames, [3, 3], [2, 2], [1, 1], [1, 1], false);
    let [_, _, h2, w2] = pooled.dims();
    pooled.reshape([n, t, c, h2, w2]).permute([0, 2, 1, 3, 4])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn max_pool_matches_brute_force() {
        let dev = Default::default();
        let (n, c, t, h, w) = (2, 3, 2, 5, 6);
        let vals: Vec<f32> = (0..n * c * t * h * w)
            .map(|i| ((i * 7919) % 101) as f32 - 50.0)
            .collect();
        let x = Tensor::<Flex, 1>::from_floats(vals.as_slice(), &dev).reshape([n, c, t, h, w]);
        let y = max_pool_1x3x3(x);
        let [_, _, _, h2, w2] = y.dims();
        assert_eq!((h2, w2), (3, 3));
        let y = y.into_data().to_vec::<f32>().unwrap();
        let mut k = 0;
        for i in 0..n * c * t {
            for oy in 0..h2 {
                for ox in 0..w2 {
                    let mut m = f32::NEG_INFINITY;
                    for dy in 0..3 {
                        for dx in 0..3 {
                            let (yy, xx) = ((oy * 2 + dy) as isize - 1, (ox * 2 + dx) as isize - 1);
                            if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                                m = m.max(vals[i * h * w + yy as usize * w + xx as usize]);
                            }
                        }
                    }
                    assert_eq!(y[k], m);
                    k += 1;
                }
            }
        }
    }
}
