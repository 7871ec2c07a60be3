//! InfoNCE against a queue of negatives (ρMoCo, docs/method.md §2.2).

use burn::tensor::{backend::Backend, Bool, Tensor};

use crate::logsumexp::logsumexp_rows;

/// q·Qᵀ/τ [B, K], with the queue entries `excluded[b, k]` (the query's own video) removed from
/// the softmax.
fn negatives<B: Backend>(
    q: Tensor<B, 2>,
    queue: Tensor<B, 2>,
    temperature: f64,
    excluded: Option<Tensor<B, 2, Bool>>,
) -> Tensor<B, 2> {
    // × 1/τ, not ÷ τ: Burn 0.21's div_scalar rounds its gradient's factor to f32
    // (docs/architecture.md "Exact f64 gradients").
    let neg = q.matmul(queue.transpose()).mul_scalar(temperature.recip());
    match excluded {
        Some(m) => neg.mask_fill(m, -1e9),
        None => neg,
    }
}

/// The released code's form: one cross-entropy row [q·k⁺, q·Q₁..Q_K]/τ per positive, target 0,
/// averaged over all B·P rows. `q` and `positives` are L2-normalised [B, d]; `queue` is [K, d];
/// `excluded` [B, K] marks queue entries that are no negatives of a row (its own video).
pub fn info_nce_per_positive<B: Backend>(
    q: Tensor<B, 2>,
    positives: &[Tensor<B, 2>],
    queue: Tensor<B, 2>,
    temperature: f64,
    excluded: Option<Tensor<B, 2, Bool>>,
) -> Tensor<B, 1> {
    let neg = negatives(q.clone(), queue, temperature, excluded); // [B, K]
    let rows: Vec<Tensor<B, 1>> = positives
        .iter()
        .map(|k| {
            let pos = (q.clone() * k.clone())
                .sum_dim(1)
                .mul_scalar(temperature.recip()); // [B, 1]
            let logits = Tensor::cat(vec![pos.clone(), neg.clone()], 1);
            (logsumexp_rows(logits) - pos).mean()
        })
        .collect();
    let p = rows.len() as f64;
    Tensor::cat(rows, 0).sum().mul_scalar(p.recip())
}

/// The paper's eq. (1): all positives share one softmax, summed in the numerator:
/// −log Σ₊ e^{q·k⁺/τ} / (Σ₊ e^{q·k⁺/τ} + Σ_Q e^{q·Q/τ}), averaged over the batch.
pub fn info_nce_multi_positive<B: Backend>(
    q: Tensor<B, 2>,
    positives: &[Tensor<B, 2>],
    queue: Tensor<B, 2>,
    temperature: f64,
    excluded: Option<Tensor<B, 2, Bool>>,
) -> Tensor<B, 1> {
    let pos: Vec<Tensor<B, 2>> = positives
        .iter()
        .map(|k| {
            (q.clone() * k.clone())
                .sum_dim(1)
                .mul_scalar(temperature.recip())
        })
        .collect();
    let pos = Tensor::cat(pos, 1); // [B, P]
    let neg = negatives(q, queue, temperature, excluded);
    let all = Tensor::cat(vec![pos.clone(), neg], 1);
    (logsumexp_rows(all) - logsumexp_rows(pos)).mean()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{DType, TensorData};

    type AB = Autodiff<Flex>;

    /// Deterministic, irregular values (no RNG: the test must not depend on a seed).
    fn values(n: usize, phase: f64) -> Vec<f64> {
        (0..n).map(|i| (1.7 * i as f64 + phase).sin()).collect()
    }

    fn tensor(v: &[f64], rows: usize) -> Tensor<AB, 2> {
        let data = TensorData::new(v.to_vec(), [rows, v.len() / rows]);
        Tensor::from_data(data, (&Default::default(), DType::F64))
    }

    /// dL/dq of the per-positive loss by its formula, in f64, at a temperature and a number of
    /// positives whose reciprocals f32 cannot hold (τ = 0.07, P = 3): a division whose
    /// gradient rounds to f32 would be off by about 1e-8 (docs/architecture.md "Exact f64
    /// gradients"). dL/dq_b = Σ_k (Σ_j softmax_j · key_j − k_b) / (τ·P·B), the softmax over
    /// [k_b, queue].
    #[test]
    fn per_positive_gradient_equals_the_closed_form_in_f64() {
        let (b, p, k, d, tau) = (4usize, 3usize, 5usize, 6usize, 0.07);
        let qv = values(b * d, 0.3);
        let kv: Vec<Vec<f64>> = (0..p).map(|i| values(b * d, 1.1 + i as f64)).collect();
        let queue_v = values(k * d, 2.9);
        let q = tensor(&qv, b).require_grad();
        let keys: Vec<Tensor<AB, 2>> = kv.iter().map(|v| tensor(v, b)).collect();
        let loss = info_nce_per_positive(q.clone(), &keys, tensor(&queue_v, k), tau, None);
        let grads = loss.backward();
        let got: Vec<f64> = q.grad(&grads).unwrap().into_data().to_vec().unwrap();

        let dot = |a: &[f64], c: &[f64]| a.iter().zip(c).map(|(x, y)| x * y).sum::<f64>();
        let mut want = vec![0.0; b * d];
        for kb in &kv {
            for r in 0..b {
                let qr = &qv[r * d..(r + 1) * d];
                let rows: Vec<&[f64]> = std::iter::once(&kb[r * d..(r + 1) * d])
                    .chain(queue_v.chunks(d))
                    .collect();
                let logits: Vec<f64> = rows.iter().map(|row| dot(qr, row) / tau).collect();
                let max = logits.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = logits.iter().map(|l| (l - max).exp()).sum();
                for (row, l) in rows.iter().zip(&logits) {
                    let w = (l - max).exp() / z;
                    for e in 0..d {
                        want[r * d + e] += w * row[e] / (tau * (p * b) as f64);
                    }
                }
                for e in 0..d {
                    want[r * d + e] -= kb[r * d + e] / (tau * (p * b) as f64);
                }
            }
        }
        let scale = want.iter().fold(0f64, |a, v| a.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0f64, |a, (g, w)| a.max((g - w).abs()));
        assert!(
            err <= 1e-13 * scale,
            "dL/dq: max error {err:.2e} (scale {scale:.2e})"
        );
    }
}
