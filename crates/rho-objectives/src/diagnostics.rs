//! Per-step diagnostics that tell learning from trivial solutions (docs/method.md, "Watching a
//! run"), and the collapse test the training guard applies to them.
//!
//! A positive similarity near 1 does not prove learning: if every target shares one direction,
//! a nearly constant prediction matches them all. The cross-video similarity (a query against
//! the targets of *other* videos) rises with it then, ‖mean target‖ approaches 1, and hidden
//! units of the heads die. Learning shows as a positive similarity well above the cross-video
//! one.

use std::collections::BTreeMap;

use burn::tensor::{backend::Backend, Tensor};

/// Mean cosine of query clip i against target clip j ≠ i of the same video (`pos`) and of the
/// other videos of the batch (`cross`). Queries and targets are L2-normalised [B, d], one per
/// clip, in the same row order.
pub fn same_and_cross_video<B: Backend>(
    queries: &[Tensor<B, 2>],
    targets: &[Tensor<B, 2>],
) -> (f64, f64) {
    let mut diag = None;
    let mut all = None;
    let mut pairs = 0usize;
    let mut rows = 0usize;
    for (i, q) in queries.iter().enumerate() {
        for (j, t) in targets.iter().enumerate() {
            if i == j {
                continue;
            }
            rows = q.dims()[0];
            let s = q.clone().detach().matmul(t.clone().detach().transpose()); // [B, B]
            let d = (q.clone().detach() * t.clone().detach()).sum();
            diag = Some(match diag {
                Some(a) => a + d,
                None => d,
            });
            let sum = s.sum();
            all = Some(match all {
                Some(a) => a + sum,
                None => sum,
            });
            pairs += 1;
        }
    }
    let (Some(diag), Some(all)) = (diag, all) else {
        return (f64::NAN, f64::NAN);
    };
    let v = Tensor::cat(vec![diag, all], 0).into_data().convert::<f64>();
    let v = v.to_vec::<f64>().unwrap_or_default();
    if v.len() != 2 || rows == 0 {
        return (f64::NAN, f64::NAN);
    }
    let n = rows as f64;
    let pos = v[0] / (pairs as f64 * n);
    let cross = if rows > 1 {
        (v[1] - v[0]) / (pairs as f64 * (n * n - n))
    } else {
        f64::NAN
    };
    (pos, cross)
}

/// ‖mean over the batch‖ of L2-normalised targets [B, d], averaged over clips: 0 for targets
/// spread evenly, 1 when every target is the same vector.
pub fn mean_target_norm<B: Backend>(targets: &[Tensor<B, 2>]) -> f64 {
    if targets.is_empty() {
        return f64::NAN;
    }
    let norms: Vec<Tensor<B, 1>> = targets
        .iter()
        .map(|t| {
            t.clone()
                .detach()
                .mean_dim(0)
                .square()
                .sum_dim(1)
                .sqrt()
                .reshape([1])
        })
        .collect();
    crate::similarity::scalar(Tensor::cat(norms, 0).mean())
}

/// Fraction of hidden units (post-ReLU activations [B, H] of the heads) that are zero for every
/// sample of the batch.
pub fn dead_unit_fraction<B: Backend>(hidden: &[Tensor<B, 2>]) -> f64 {
    let units: usize = hidden.iter().map(|h| h.dims()[1]).sum();
    if units == 0 {
        return f64::NAN;
    }
    let dead: Vec<Tensor<B, 1>> = hidden
        .iter()
        .map(|h| {
            h.clone()
                .detach()
                .max_dim(0)
                .lower_equal_elem(0.0)
                .float()
                .sum()
        })
        .collect();
    crate::similarity::scalar(Tensor::cat(dead, 0).sum()) / units as f64
}

/// Why a step's metrics show a collapsed representation, if they do: the embeddings (queries)
/// or the targets are one vector for the whole batch, or every hidden unit of the heads is dead
/// (the heads output a constant).
pub fn collapse(metrics: &BTreeMap<&'static str, f64>) -> Option<String> {
    let get = |k: &str| metrics.get(k).copied().filter(|v| v.is_finite());
    if let Some(std) = get("emb_std").filter(|s| *s < 1e-4) {
        return Some(format!(
            "the embeddings of a batch are all alike (std {std:.2e})"
        ));
    }
    if let Some(n) = get("target_mean_norm").filter(|n| *n > 1.0 - 1e-6) {
        return Some(format!(
            "the targets of a batch are all alike (‖mean target‖ {n:.7})"
        ));
    }
    if let Some(d) = get("dead_units").filter(|d| *d >= 1.0) {
        return Some(format!(
            "every hidden unit of the heads is dead ({:.0} %)",
            100.0 * d
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    fn t(v: &[f32], n: usize, d: usize) -> Tensor<Flex, 2> {
        Tensor::from_data(TensorData::new(v.to_vec(), [n, d]), &Default::default())
    }

    #[test]
    fn same_and_cross_video_by_hand() {
        // Two videos, two clips; queries of clip 0 against targets of clip 1 and vice versa.
        let q0 = t(&[1.0, 0.0, 0.0, 1.0], 2, 2);
        let q1 = t(&[0.6, 0.8, 0.8, 0.6], 2, 2);
        let t0 = t(&[1.0, 0.0, 0.0, 1.0], 2, 2);
        let t1 = t(&[0.0, 1.0, 1.0, 0.0], 2, 2);
        let (pos, cross) = same_and_cross_video(&[q0, q1], &[t0, t1]);
        // (q0·t1): diag 0, 0; off 1, 1.  (q1·t0): diag 0.6, 0.6; off 0.8, 0.8.
        assert!((pos - (0.0 + 0.0 + 0.6 + 0.6) / 4.0).abs() < 1e-6, "{pos}");
        assert!(
            (cross - (1.0 + 1.0 + 0.8 + 0.8) / 4.0).abs() < 1e-6,
            "{cross}"
        );
    }

    #[test]
    fn mean_norm_and_dead_units() {
        let same = t(&[0.6, 0.8, 0.6, 0.8], 2, 2);
        let opposite = t(&[1.0, 0.0, -1.0, 0.0], 2, 2);
        assert!((mean_target_norm(&[same]) - 1.0).abs() < 1e-6);
        assert!(mean_target_norm(&[opposite]).abs() < 1e-6);
        // Unit 1 is zero for both samples, unit 0 is not.
        let h = t(&[0.5, 0.0, 0.0, 0.0], 2, 2);
        assert!((dead_unit_fraction(&[h]) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn collapse_names_the_symptom() {
        let m = |k: &'static str, v: f64| BTreeMap::from([(k, v), ("loss", 1.0)]);
        assert!(collapse(&m("emb_std", 0.05)).is_none());
        assert!(collapse(&m("emb_std", 1e-5))
            .unwrap()
            .contains("embeddings"));
        assert!(collapse(&m("target_mean_norm", 0.9999999))
            .unwrap()
            .contains("targets"));
        assert!(collapse(&m("dead_units", 1.0)).unwrap().contains("dead"));
        assert!(collapse(&m("dead_units", 0.99)).is_none());
    }
}
