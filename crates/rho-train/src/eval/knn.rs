//! Cosine kNN classification (docs/method.md §2.8, after Wu et al. 2018): each test video's
//! normalised feature (its views' normalised features averaged) votes with its k most similar
//! training videos, each vote weighted by exp(similarity / T). Similarities are one matmul per
//! chunk on the backend, so a Kinetics-size bank runs on the GPU.

use burn::tensor::{backend::Backend, Tensor, TensorData};

use super::features::FeatureSet;
use super::metrics::Scores;

/// One L2-normalised vector per video: the mean of its normalised views, normalised again.
pub fn video_embeddings(set: &FeatureSet) -> Vec<f32> {
    let mut out = vec![0f32; set.n * set.dim];
    for i in 0..set.n {
        let dst = &mut out[i * set.dim..(i + 1) * set.dim];
        for v in 0..set.views {
            let f = set.get(i, v);
            let norm = f.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            dst.iter_mut().zip(f).for_each(|(d, x)| *d += x / norm);
        }
        let norm = dst.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        dst.iter_mut().for_each(|d| *d /= norm);
    }
    out
}

/// Class votes of every test video (rows sum to 1).
pub fn knn_scores<B: Backend>(
    train: &FeatureSet,
    test: &FeatureSet,
    classes: usize,
    k: usize,
    temperature: f64,
    device: &B::Device,
) -> Scores {
    let d = train.dim;
    let bank = Tensor::<B, 2>::from_data(
        TensorData::new(video_embeddings(train), [train.n, d]),
        device,
    )
    .transpose();
    let queries = video_embeddings(test);
    let k = k.min(train.n);
    let mut scores = Vec::with_capacity(test.n * classes);
    const CHUNK: usize = 256;
    for start in (0..test.n).step_by(CHUNK) {
        let rows = CHUNK.min(test.n - start);
        let q = Tensor::<B, 2>::from_data(
            TensorData::new(queries[start * d..(start + rows) * d].to_vec(), [rows, d]),
            device,
        );
        let sims: Vec<f32> = q
            .matmul(bank.clone())
            .into_data()
            .convert::<f32>()
            .into_vec()
            .unwrap_or_default();
        for r in 0..rows {
            let row = &sims[r * train.n..(r + 1) * train.n];
            scores.extend(vote(row, &train.labels, classes, k, temperature));
        }
    }
    Scores {
        scores,
        classes,
        labels: test.labels.clone(),
    }
}

/// Weighted votes of the `k` most similar entries of `sims`.
pub fn vote(sims: &[f32], labels: &[usize], classes: usize, k: usize, t: f64) -> Vec<f32> {
    let mut order: Vec<usize> = (0..sims.len()).collect();
    if k < order.len() {
        order.select_nth_unstable_by(k, |a, b| sims[*b].total_cmp(&sims[*a]));
        order.truncate(k);
    }
    let mut votes = vec![0f64; classes];
    for j in order {
        if labels[j] < classes {
            votes[labels[j]] += (sims[j] as f64 / t).exp();
        }
    }
    let total: f64 = votes.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    votes.iter().map(|v| (v / total) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_by_hand() {
        // Neighbours with similarities .9 (class 1), .8 (class 0), .7 (class 0), .1 (class 1).
        let v = vote(&[0.9, 0.8, 0.1, 0.7], &[1, 0, 1, 0], 2, 3, 0.1);
        let (a, b) = ((8f64).exp() + (7f64).exp(), (9f64).exp());
        assert!((v[0] as f64 - a / (a + b)).abs() < 1e-5);
        assert!((v[1] as f64 - b / (a + b)).abs() < 1e-5);
        // k = 1: only the nearest votes.
        assert_eq!(
            vote(&[0.9, 0.8, 0.1, 0.7], &[1, 0, 1, 0], 2, 1, 0.1),
            [0.0, 1.0]
        );
    }

    #[test]
    fn embeddings_average_normalised_views() {
        let set = FeatureSet {
            features: vec![3.0, 0.0, 0.0, 0.5],
            n: 1,
            views: 2,
            dim: 2,
            labels: vec![0],
        };
        let e = video_embeddings(&set);
        let s = 0.5f32.sqrt();
        assert!((e[0] - s).abs() < 1e-6 && (e[1] - s).abs() < 1e-6);
    }
}
