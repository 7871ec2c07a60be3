//! `Prototypes`: SwAV's K prototype vectors (a bias-free Linear d→K, docs/method.md §2.5).

use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Distribution, Tensor};

use crate::similarity::l2_normalize;

#[derive(Module, Debug)]
pub struct Prototypes<B: Backend> {
    /// [K, d]: one prototype per row.
    pub weight: Param<Tensor<B, 2>>,
}

impl<B: Backend> Prototypes<B> {
    /// K prototypes of dimension d, kaiming-uniform (a = 1) like the other head layers.
    pub fn new(count: usize, dim: usize, device: &B::Device) -> Self {
        let bound = (3.0 / dim as f64).sqrt();
        Self {
            weight: Param::from_tensor(Tensor::random(
                [count, dim],
                Distribution::Uniform(-bound, bound),
                device,
            )),
        }
    }

    /// Re-normalises every prototype to unit length (no gradient through the normalisation), as
    /// SwAV does each step. The parameter stays trainable: a detached value would otherwise
    /// carry `require_grad = false` into the parameter and the prototypes would never learn.
    pub fn normalized(self) -> Self {
        let trainable = self.weight.val().is_require_grad();
        let w = l2_normalize(self.weight.val())
            .detach()
            .set_require_grad(trainable);
        Self {
            weight: self.weight.map(|_| w),
        }
    }

    /// Scores z·Wᵀ [B, K]. `frozen` (SwAV's first epoch) lets no gradient reach the prototypes.
    pub fn scores(&self, z: Tensor<B, 2>, frozen: bool) -> Tensor<B, 2> {
        let w = if frozen {
            self.weight.val().detach()
        } else {
            self.weight.val()
        };
        z.matmul(w.transpose())
    }

    pub fn count(&self) -> usize {
        self.weight.dims()[0]
    }
}
