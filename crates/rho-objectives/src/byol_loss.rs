//! ρBYOL's regression loss (docs/method.md §2.3).

use burn::tensor::{backend::Backend, Tensor};

/// −2·cos(p, z′) averaged over the batch, for L2-normalised prediction `p` and target `z`.
/// Equals BYOL's 2 − 2·cos up to a constant.
pub fn negative_cosine_x2<B: Backend>(p: Tensor<B, 2>, z: Tensor<B, 2>) -> Tensor<B, 1> {
    (p * z).sum_dim(1).mean().mul_scalar(-2.0)
}
