//! NT-Xent over the global batch (ρSimCLR, docs/method.md §2.4).

use burn::tensor::{backend::Backend, Bool, Tensor, TensorData};

use crate::collectives::Collectives;
use crate::logsumexp::logsumexp_rows;

/// Loss of one pair of views: for each of the 2N anchors (N = global batch),
/// −log e^{s(a,b)/τ} / Σ_{c≠a} e^{s(a,c)/τ}, averaged. The denominator includes the positive.
/// `z0`, `z1`: this device's L2-normalised embeddings [n, d].
pub fn nt_xent<B: Backend>(
    z0: Tensor<B, 2>,
    z1: Tensor<B, 2>,
    temperature: f64,
    coll: &dyn Collectives<B>,
) -> Tensor<B, 1> {
    let [n, _] = z0.dims();
    let device = z0.device();
    let g0 = coll.all_gather_with_grad(z0.clone());
    let g1 = coll.all_gather_with_grad(z1.clone());
    let big_n = g0.dims()[0];
    let offset = coll.rank() * n;
    let local = Tensor::cat(vec![z0, z1], 0); // [2n, d]
    let global = Tensor::cat(vec![g0, g1], 0); // [2N, d]

    // × 1/τ: docs/architecture.md "Exact f64 gradients".
    let sim = local
        .matmul(global.transpose())
        .mul_scalar(temperature.recip()); // [2n, 2N]

    let mut self_mask = vec![false; 2 * n * 2 * big_n];
    let mut pos_mask = vec![false; 2 * n * 2 * big_n];
    for a in 0..2 * n {
        let (me, partner) = if a < n {
            (offset + a, big_n + offset + a)
        } else {
            (big_n + offset + a - n, offset + a - n)
        };
        self_mask[a * 2 * big_n + me] = true;
        pos_mask[a * 2 * big_n + partner] = true;
    }
    let self_mask =
        Tensor::<B, 2, Bool>::from_data(TensorData::new(self_mask, [2 * n, 2 * big_n]), &device);
    let pos_mask =
        Tensor::<B, 2, Bool>::from_data(TensorData::new(pos_mask, [2 * n, 2 * big_n]), &device);
    let positive = sim.clone().mask_fill(pos_mask.bool_not(), 0.0).sum_dim(1); // [2n, 1]
    let others = sim.mask_fill(self_mask, -1e9);
    (logsumexp_rows(others) - positive).mean()
}
