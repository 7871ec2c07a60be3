//! Small shared pieces: L2 normalisation and the collapse monitor.

use burn::tensor::{backend::Backend, Tensor};

/// Rows scaled to unit L2 norm (PyTorch's `F.normalize`, eps 1e-12).
pub fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Mean over dimensions of the per-dimension standard deviation of normalised embeddings.
/// Healthy: about 1/√d; collapsed: 0.
pub fn embedding_std<B: Backend>(z: Tensor<B, 2>) -> f64 {
    let [n, _] = z.dims();
    if n < 2 {
        return f64::NAN;
    }
    let mean = z.clone().mean_dim(0);
    let var = (z - mean).square().sum_dim(0).div_scalar((n - 1) as f64);
    scalar(var.sqrt().mean())
}

/// A one-element tensor read back as f64.
pub fn scalar<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}
