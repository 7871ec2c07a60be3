//! ρSwAV's swapped prediction (docs/method.md §2.5).

use burn::tensor::{backend::Backend, Tensor};

use crate::collectives::Collectives;
use crate::logsumexp::log_softmax_rows;
use crate::sinkhorn::sinkhorn;

/// Settings of the swapped-prediction loss.
#[derive(Debug, Clone, Copy)]
pub struct SwavSettings {
    /// Softmax temperature τ (0.1).
    pub temperature: f64,
    /// Sinkhorn ε (0.05).
    pub epsilon: f64,
    /// Sinkhorn iterations (3).
    pub iterations: usize,
    /// How many of the first views give codes (2, as the released code).
    pub assignment_views: usize,
}

/// (1/A)·Σ_{a<A} (1/(V−1))·Σ_{v≠a} −mean_b Σ_k Q_a[b,k]·log softmax(s_v/τ)[b,k], with the codes
/// Q_a = Sinkhorn(s_a) of the first A views. `scores[v]` = z_v·Wᵀ for normalised z and W.
pub fn swapped_prediction<B: Backend>(
    scores: &[Tensor<B, 2>],
    s: SwavSettings,
    coll: &dyn Collectives<B>,
) -> Tensor<B, 1> {
    let v = scores.len();
    let a = s.assignment_views.min(v);
    let log_p: Vec<Tensor<B, 2>> = scores
        .iter()
        .map(|x| log_softmax_rows(x.clone().mul_scalar(s.temperature.recip())))
        .collect();
    let mut total: Option<Tensor<B, 1>> = None;
    for i in 0..a {
        let q = sinkhorn(scores[i].clone(), s.epsilon, s.iterations, coll);
        for (j, lp) in log_p.iter().enumerate() {
            if j == i {
                continue;
            }
            let ce = (q.clone() * lp.clone())
                .sum_dim(1)
                .mean()
                .neg()
                .mul_scalar(((v - 1) as f64).recip());
            total = crate::method::accumulate(total, ce);
        }
    }
    total
        .expect("swapped prediction needs at least two views")
        .mul_scalar((a as f64).recip()) // docs/architecture.md "Exact f64 gradients"
}
