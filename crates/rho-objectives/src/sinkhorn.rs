//! `SinkhornKnopp`: SwAV's equal-partition soft codes (docs/method.md §2.5), over the global
//! batch.

use burn::tensor::{backend::Backend, Tensor};

use crate::collectives::Collectives;

/// Codes Q [B, K] for prototype scores [B, K]: exp(s/ε), made to sum to 1, then `iterations` ×
/// (rows to 1/K over the global batch, columns to 1/B), then scaled so each sample's codes sum
/// to 1. No gradient flows through the result.
pub fn sinkhorn<B: Backend>(
    scores: Tensor<B, 2>,
    epsilon: f64,
    iterations: usize,
    coll: &dyn Collectives<B>,
) -> Tensor<B, 2> {
    let scores = scores.detach();
    let [b_local, k] = scores.dims();
    let b_global = (b_local * coll.world_size()) as f64;
    // Subtracting the global max does not change the normalised result, and keeps exp finite
    // for any score scale.
    let max = coll
        .all_gather(scores.clone().max().reshape([1, 1]))
        .max()
        .reshape([1, 1]);
    let q = (scores - max).div_scalar(epsilon).exp().transpose(); // [K, B]
    let total = coll.all_reduce_sum(q.clone().sum().reshape([1, 1]));
    let mut q = q / total;
    for _ in 0..iterations {
        let rows = coll.all_reduce_sum(q.clone().sum_dim(1)); // [K, 1]
        q = (q / rows).div_scalar(k as f64);
        let cols = q.clone().sum_dim(0); // [1, B]
        q = (q / cols).div_scalar(b_global);
    }
    q.mul_scalar(b_global).transpose()
}
