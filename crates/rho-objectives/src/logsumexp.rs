//! Row-wise log-sum-exp with the max subtracted (stable for temperatures of 0.05–0.1).

use burn::tensor::{backend::Backend, Tensor};

/// log Σ_j exp(x[i, j]) as [N, 1].
pub fn logsumexp_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let max = x.clone().max_dim(1).detach();
    (x - max.clone()).exp().sum_dim(1).log() + max
}

/// Row-wise log-softmax.
pub fn log_softmax_rows<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    x.clone() - logsumexp_rows(x)
}
