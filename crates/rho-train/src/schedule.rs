//! Learning-rate schedule of the released configs (docs/method.md §4.2), evaluated every
//! iteration at the fractional epoch e: linear warm-up from `warmup_start` to the cosine's value
//! at W, then a half-period cosine over the whole run (not shifted by the warm-up) ending at 0.
//! Plain f64, so LARS-scale rates above 1.0 work (Burn 0.21's schedulers reject them).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CosineSchedule {
    /// Peak learning rate (after the linear scaling rule).
    pub base_lr: f64,
    /// Learning rate at epoch 0.
    pub warmup_start: f64,
    /// Warm-up length W in epochs.
    pub warmup_epochs: f64,
    /// Total epochs E.
    pub epochs: f64,
}

impl CosineSchedule {
    fn cosine(&self, e: f64) -> f64 {
        self.base_lr * 0.5 * (1.0 + (std::f64::consts::PI * e / self.epochs).cos())
    }

    /// The learning rate at fractional epoch `e`.
    pub fn lr(&self, e: f64) -> f64 {
        if e < self.warmup_epochs {
            let end = self.cosine(self.warmup_epochs);
            self.warmup_start + e * (end - self.warmup_start) / self.warmup_epochs
        } else {
            self.cosine(e)
        }
    }
}

/// The linear scaling rule: a rate tuned for `reference_batch` clips, used at `batch`.
pub fn scale_lr(lr: f64, batch: usize, reference_batch: usize) -> f64 {
    lr * batch as f64 / reference_batch as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_as_the_released_code() {
        // BYOL at 64 GPUs: 4.8 peak, warm-up 35 epochs from 0.001·8, 200 epochs.
        let s = CosineSchedule {
            base_lr: 4.8,
            warmup_start: 0.008,
            warmup_epochs: 35.0,
            epochs: 200.0,
        };
        assert!((s.lr(0.0) - 0.008).abs() < 1e-12);
        let at_w = 4.8 * 0.5 * (1.0 + (std::f64::consts::PI * 35.0 / 200.0).cos());
        assert!((s.lr(35.0) - at_w).abs() < 1e-12);
        assert!((s.lr(17.5) - (0.008 + 17.5 * (at_w - 0.008) / 35.0)).abs() < 1e-12);
        assert!((s.lr(100.0) - 2.4).abs() < 1e-12);
        assert!(s.lr(200.0).abs() < 1e-12);
        // Monotone up during warm-up, down after it; rates above 1 are fine.
        let lrs: Vec<f64> = (0..=400).map(|i| s.lr(i as f64 / 2.0)).collect();
        assert!(lrs[..70].windows(2).all(|w| w[1] > w[0]));
        assert!(lrs[70..].windows(2).all(|w| w[1] <= w[0]));
        assert!(lrs.iter().cloned().fold(0.0, f64::max) > 4.0);
    }

    #[test]
    fn linear_scaling() {
        assert!((scale_lr(0.6, 512, 64) - 4.8).abs() < 1e-12);
        assert!((scale_lr(0.5, 64, 64) - 0.5).abs() < 1e-12);
    }
}
