//! Accuracy of class scores: top-1, top-5, mean per-class accuracy and the confusion matrix.

use serde::Serialize;

/// Class scores of N videos (rows of `classes` values; higher = more likely).
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub scores: Vec<f32>,
    pub classes: usize,
    pub labels: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accuracy {
    /// Percentages.
    pub top1: f64,
    pub top5: f64,
    pub mean_class: f64,
    pub videos: usize,
    /// confusion[true][predicted] counts.
    pub confusion: Vec<Vec<usize>>,
}

impl Scores {
    pub fn accuracy(&self) -> Accuracy {
        let c = self.classes;
        let n = self.labels.len();
        let mut confusion = vec![vec![0usize; c]; c];
        let (mut top1, mut top5) = (0usize, 0usize);
        for (i, &y) in self.labels.iter().enumerate() {
            assert!(
                y < c,
                "label {y} outside the {c} classes (checked when the lists load)"
            );
            let row = &self.scores[i * c..(i + 1) * c];
            let pred = argmax(row);
            confusion[y][pred] += 1;
            // Rank of the true class, ties broken by class index as argmax does.
            let better = row
                .iter()
                .enumerate()
                .filter(|(k, s)| **s > row[y] || (**s == row[y] && *k < y))
                .count();
            top1 += (pred == y) as usize;
            top5 += (better < 5) as usize;
        }
        let per_class: Vec<f64> = confusion
            .iter()
            .enumerate()
            .filter(|(_, r)| r.iter().sum::<usize>() > 0)
            .map(|(k, r)| r[k] as f64 / r.iter().sum::<usize>() as f64)
            .collect();
        let pct = |x: usize| 100.0 * x as f64 / n.max(1) as f64;
        Accuracy {
            top1: pct(top1),
            top5: pct(top5),
            mean_class: 100.0 * per_class.iter().sum::<f64>() / per_class.len().max(1) as f64,
            videos: n,
            confusion,
        }
    }
}

/// Index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, v)| {
            if *v > bv {
                (i, *v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// Softmax of each row of logits [rows, c], averaged over groups of `views` consecutive rows
/// (docs/method.md §5.1: softmax scores averaged over the 30 views).
pub fn mean_softmax(logits: &[f32], c: usize, views: usize) -> Vec<f32> {
    let rows = logits.len() / c;
    let mut out = vec![0f32; rows / views * c];
    for r in 0..rows {
        let row = &logits[r * c..(r + 1) * c];
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = row.iter().map(|v| (v - m).exp()).sum();
        let dst = &mut out[(r / views) * c..(r / views + 1) * c];
        for k in 0..c {
            dst[k] += (row[k] - m).exp() / z / views as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracies_by_hand() {
        // 4 videos, 6 classes; truth 0,1,2,2.
        let mut scores = vec![0f32; 4 * 6];
        let set = |s: &mut Vec<f32>, i: usize, order: [usize; 6]| {
            for (rank, k) in order.iter().enumerate() {
                s[i * 6 + k] = (6 - rank) as f32;
            }
        };
        set(&mut scores, 0, [0, 1, 2, 3, 4, 5]); // right
        set(&mut scores, 1, [0, 2, 3, 4, 1, 5]); // rank 4: top-5 only
        set(&mut scores, 2, [2, 0, 1, 3, 4, 5]); // right
        set(&mut scores, 3, [0, 1, 3, 4, 5, 2]); // rank 5: neither
        let a = Scores {
            scores,
            classes: 6,
            labels: vec![0, 1, 2, 2],
        }
        .accuracy();
        assert_eq!(a.top1, 50.0);
        assert_eq!(a.top5, 75.0);
        // Per class: 0 → 1/1, 1 → 0/1, 2 → 1/2; mean 50 %.
        assert!((a.mean_class - 50.0).abs() < 1e-9);
        assert_eq!(a.confusion[2], vec![1, 0, 1, 0, 0, 0]);
        assert_eq!(a.confusion[1][0], 1);
    }

    #[test]
    fn softmax_is_averaged_over_views() {
        // Two views of one video: logits (0, ln 3) and (ln 3, 0) → softmax (.25,.75), (.75,.25).
        let l3 = 3f32.ln();
        let p = mean_softmax(&[0.0, l3, l3, 0.0], 2, 2);
        assert!((p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6);
        let p = mean_softmax(&[0.0, l3], 2, 1);
        assert!((p[1] - 0.75).abs() < 1e-6);
    }
}
