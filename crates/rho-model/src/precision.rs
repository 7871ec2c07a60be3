//! `Precision`: the dtype that convolutions and linear layers compute in (mixed precision,
//! docs/architecture.md "Mixed precision").
//!
//! Parameters stay in the network's dtype (the f32 master weights); a low-precision layer casts
//! its input and weights down, computes, and casts its result back, so BatchNorm, the losses,
//! normalisations and the optimiser see full-precision tensors. Burn's `cast` is differentiable:
//! each gradient passes through the same casts in reverse (so it is rounded where a real
//! low-precision kernel would round it).

use std::fmt;
use std::str::FromStr;

use burn::nn::Linear;
use burn::tensor::{backend::Backend, FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// The compute dtype of convolutions and linear layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in the network's own dtype (f32, or f64 in the parity tests).
    #[default]
    F32,
    /// bfloat16: f32's range, 8 bits of mantissa; no loss scaling needed.
    Bf16,
    /// IEEE half: 11 bits of mantissa but a range of ±65504, so gradients need a loss scale.
    F16,
}

impl Precision {
    pub const ALL: [Precision; 3] = [Precision::F32, Precision::Bf16, Precision::F16];

    /// The dtype layers compute in, or `None` for full precision.
    pub fn low_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F16 => Some(FloatDType::F16),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }

    /// Whether gradients need dynamic loss scaling (f16's narrow range).
    pub fn needs_loss_scale(self) -> bool {
        self == Precision::F16
    }

    /// `t` rounded to the compute dtype and back to its own: what a low-precision kernel reads.
    pub fn round<B: Backend, const D: usize>(self, t: Tensor<B, D>) -> Tensor<B, D> {
        match self.low_dtype() {
            None => t,
            Some(low) => {
                let full = t.dtype();
                t.cast(low).cast(full)
            }
        }
    }

    /// `lin.forward(x)` with the product in the compute dtype; the bias is added in `x`'s dtype.
    pub fn linear<B: Backend, const D: usize>(
        self,
        lin: &Linear<B>,
        x: Tensor<B, D>,
    ) -> Tensor<B, D> {
        let Some(low) = self.low_dtype() else {
            return lin.forward(x);
        };
        let full = x.dtype();
        let w = lin.weight.val().cast(low).unsqueeze::<D>();
        let y = x.cast(low).matmul(w).cast(full);
        match &lin.bias {
            Some(b) => y + b.val().unsqueeze::<D>(),
            None => y,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown precision {s:?}; use \"f32\", \"bf16\" or \"f16\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::nn::LinearConfig;
    use burn::tensor::Distribution;

    #[test]
    fn names_round_trip() {
        for p in Precision::ALL {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{p}\""));
            assert_eq!(serde_json::from_str::<Precision>(&json).ok(), Some(p));
        }
        assert!("fp16"
            .parse::<Precision>()
            .unwrap_err()
            .contains("\"bf16\""));
    }

    #[test]
    fn round_keeps_the_dtype_and_rounds_to_the_mantissa() {
        let dev = Default::default();
        let x = Tensor::<Flex, 1>::from_floats([1.0 + 1.0 / 512.0, 1.0 + 1.0 / 64.0], &dev);
        let b = Precision::Bf16.round(x.clone());
        assert_eq!(b.dtype(), x.dtype());
        // bf16 keeps 8 significant bits: 1 + 2⁻⁹ rounds to 1, 1 + 2⁻⁶ stays.
        assert_eq!(
            b.into_data().to_vec::<f32>().unwrap(),
            vec![1.0, 1.0 + 1.0 / 64.0]
        );
        let h = Precision::F16.round(x).into_data().to_vec::<f32>().unwrap();
        assert_eq!(h, vec![1.0 + 1.0 / 512.0, 1.0 + 1.0 / 64.0]);
    }

    #[test]
    fn low_precision_linear_is_the_rounded_product() {
        let dev = Default::default();
        let lin = LinearConfig::new(16, 8).init::<Flex>(&dev);
        let x = Tensor::<Flex, 2>::random([4, 16], Distribution::Normal(0.0, 1.0), &dev);
        let full = lin.forward(x.clone());
        for p in [Precision::Bf16, Precision::F16] {
            let y = p.linear(&lin, x.clone());
            assert_eq!(y.dtype(), full.dtype());
            // Reference: rounded operands, f32 product, rounded result, bias in f32.
            let w = p.round(lin.weight.val());
            let want = p.round(p.round(x.clone()).matmul(w))
                + lin.bias.as_ref().map(|b| b.val().unsqueeze()).unwrap();
            let (y, want, full) = (data(y), data(want), data(full.clone()));
            let err = max_rel(&y, &want);
            assert!(err < 1e-6, "{p}: {err}");
            let tol = if p == Precision::Bf16 { 2e-2 } else { 2e-3 };
            let off = max_rel(&y, &full);
            assert!(off > 0.0 && off < tol, "{p}: {off} against f32");
        }
        assert_eq!(
            data(Precision::F32.linear(&lin, x.clone())),
            data(lin.forward(x))
        );
    }

    fn data<const D: usize>(t: Tensor<Flex, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().to_vec().unwrap()
    }

    fn max_rel(a: &[f32], b: &[f32]) -> f32 {
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }
}
