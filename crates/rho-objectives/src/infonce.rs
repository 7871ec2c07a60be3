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
    let neg = q.matmul(queue.transpose()).div_scalar(temperature);
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
            let pos = (q.clone() * k.clone()).sum_dim(1).div_scalar(temperature); // [B, 1]
            let logits = Tensor::cat(vec![pos.clone(), neg.clone()], 1);
            (logsumexp_rows(logits) - pos).mean()
        })
        .collect();
    let p = rows.len() as f64;
    Tensor::cat(rows, 0).sum().div_scalar(p)
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
        .map(|k| (q.clone() * k.clone()).sum_dim(1).div_scalar(temperature))
        .collect();
    let pos = Tensor::cat(pos, 1); // [B, P]
    let neg = negatives(q, queue, temperature, excluded);
    let all = Tensor::cat(vec![pos.clone(), neg], 1);
    (logsumexp_rows(all) - logsumexp_rows(pos)).mean()
}
