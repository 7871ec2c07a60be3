//! `KeyQueue`: MoCo's FIFO ring buffer of negative keys (docs/method.md §2.2), with the video
//! each key came from, so that a query's own video can be left out of its negatives once the
//! queue holds more than an epoch of keys (docs/method.md, "ρMoCo").

use burn::tensor::{backend::Backend, Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::ObjectiveError;

/// K keys of dimension d, written in place at a pointer that wraps around.
#[derive(Debug, Clone)]
pub struct KeyQueue<B: Backend> {
    /// [K, d]
    pub keys: Tensor<B, 2>,
    /// The dataset index of each key's video; −1 for the random initial entries.
    pub videos: Vec<i64>,
    pub ptr: usize,
}

/// What a checkpoint stores of the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyQueueState {
    pub len: usize,
    pub dim: usize,
    pub ptr: usize,
    pub keys: Vec<f32>,
    /// Absent in checkpoints written before video ids were kept: all unknown (−1).
    #[serde(default)]
    pub videos: Vec<i64>,
}

impl<B: Backend> KeyQueue<B> {
    /// MoCo's init: uniform in ±1/√(d/3), not normalised.
    pub fn new(len: usize, dim: usize, device: &B::Device) -> Self {
        let stdv = 1.0 / (dim as f64 / 3.0).sqrt();
        Self {
            keys: Tensor::random([len, dim], Distribution::Uniform(-stdv, stdv), device),
            videos: vec![-1; len],
            ptr: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `keys` [n, d] of the videos `videos` (n ids, or none: unknown) at the pointer,
    /// wrapping around the end; n must not exceed K.
    pub fn enqueue(&mut self, keys: Tensor<B, 2>, videos: &[i64]) -> Result<(), ObjectiveError> {
        let [n, d] = keys.dims();
        let [len, qd] = self.keys.dims();
        if d != qd {
            return Err(ObjectiveError::Shape(format!(
                "queue holds {qd}-d keys, got {d}-d"
            )));
        }
        if !videos.is_empty() && videos.len() != n {
            return Err(ObjectiveError::Shape(format!(
                "{n} keys but {} video ids",
                videos.len()
            )));
        }
        if n > len {
            return Err(ObjectiveError::Shape(format!(
                "{n} keys per step exceed the queue length {len}; use a longer queue"
            )));
        }
        let keys = keys.detach();
        let first = n.min(len - self.ptr);
        self.keys = self.keys.clone().slice_assign(
            [self.ptr..self.ptr + first, 0..d],
            keys.clone().slice([0..first, 0..d]),
        );
        if first < n {
            self.keys = self
                .keys
                .clone()
                .slice_assign([0..n - first, 0..d], keys.slice([first..n, 0..d]));
        }
        for i in 0..n {
            self.videos[(self.ptr + i) % len] = videos.get(i).copied().unwrap_or(-1);
        }
        self.ptr = (self.ptr + n) % len;
        Ok(())
    }

    /// For each of `videos` (a batch's rows), which queue entries hold a key of the same video:
    /// `None` when no row's video is in the queue (the usual case once K is below an epoch of
    /// keys), else a [rows, K] boolean mask.
    pub fn own_video_mask(&self, videos: &[i64]) -> Option<TensorData> {
        let present: std::collections::HashSet<i64> =
            self.videos.iter().copied().filter(|v| *v >= 0).collect();
        if !videos.iter().any(|v| present.contains(v)) {
            return None;
        }
        let k = self.videos.len();
        let mask: Vec<bool> = videos
            .iter()
            .flat_map(|v| self.videos.iter().map(move |q| *q >= 0 && q == v))
            .collect();
        Some(TensorData::new(mask, [videos.len(), k]))
    }

    pub fn state(&self) -> KeyQueueState {
        let [len, dim] = self.keys.dims();
        let keys = self
            .keys
            .clone()
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .unwrap_or_default();
        KeyQueueState {
            len,
            dim,
            ptr: self.ptr,
            keys,
            videos: self.videos.clone(),
        }
    }

    pub fn from_state(s: &KeyQueueState, device: &B::Device) -> Result<Self, ObjectiveError> {
        let videos_ok = s.videos.is_empty() || s.videos.len() == s.len;
        if s.keys.len() != s.len * s.dim || s.ptr >= s.len.max(1) || !videos_ok {
            return Err(ObjectiveError::Shape(format!(
                "queue state is inconsistent: {} values for {}×{}, pointer {}",
                s.keys.len(),
                s.len,
                s.dim,
                s.ptr
            )));
        }
        Ok(Self {
            keys: Tensor::from_data(TensorData::new(s.keys.clone(), [s.len, s.dim]), device),
            videos: if s.videos.is_empty() {
                vec![-1; s.len]
            } else {
                s.videos.clone()
            },
            ptr: s.ptr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn rows(q: &KeyQueue<Flex>) -> Vec<f32> {
        q.keys.clone().into_data().to_vec::<f32>().unwrap()
    }

    #[test]
    fn fifo_wraps_around_and_round_trips() {
        let dev = Default::default();
        let mut q = KeyQueue::<Flex>::new(5, 1, &dev);
        for step in 0..4 {
            let v: Vec<f32> = (0..2).map(|i| (step * 2 + i) as f32).collect();
            let ids = [step as i64 * 10, step as i64 * 10 + 1];
            q.enqueue(Tensor::from_data(TensorData::new(v, [2, 1]), &dev), &ids)
                .unwrap();
        }
        // 8 keys through a ring of 5: positions hold 5, 6, 7, 3, 4 and the pointer is at 3.
        assert_eq!(rows(&q), [5.0, 6.0, 7.0, 3.0, 4.0]);
        assert_eq!(q.videos, [21, 30, 31, 11, 20]);
        assert_eq!(q.ptr, 3);
        let back = KeyQueue::<Flex>::from_state(&q.state(), &dev).unwrap();
        assert_eq!(rows(&back), rows(&q));
        assert_eq!(back.videos, q.videos);
        assert_eq!(back.ptr, 3);
        assert!(q.enqueue(Tensor::zeros([6, 1], &dev), &[]).is_err());
        assert!(q.enqueue(Tensor::zeros([1, 2], &dev), &[]).is_err());
        assert!(q.enqueue(Tensor::zeros([2, 1], &dev), &[1]).is_err());
    }

    #[test]
    fn own_video_mask_marks_the_keys_of_each_rows_video() {
        let dev = Default::default();
        let mut q = KeyQueue::<Flex>::new(4, 1, &dev);
        assert!(
            q.own_video_mask(&[0, 1]).is_none(),
            "the initial keys belong to no video"
        );
        q.enqueue(Tensor::zeros([3, 1], &dev), &[7, 8, 7]).unwrap();
        assert!(q.own_video_mask(&[1, 2]).is_none());
        let m = q.own_video_mask(&[7, 9]).unwrap();
        let m = m.to_vec::<bool>().unwrap();
        assert_eq!(m, [true, false, true, false, false, false, false, false]);
    }

    #[test]
    fn old_checkpoints_without_video_ids_load() {
        let dev = Default::default();
        let mut s = KeyQueue::<Flex>::new(3, 2, &dev).state();
        s.videos.clear();
        let q = KeyQueue::<Flex>::from_state(&s, &dev).unwrap();
        assert_eq!(q.videos, [-1, -1, -1]);
    }

    #[test]
    fn init_range() {
        let q = KeyQueue::<Flex>::new(1000, 12, &Default::default());
        let stdv = 1.0 / (12.0f32 / 3.0).sqrt();
        let v = rows(&q);
        assert!(v.iter().all(|x| x.abs() <= stdv));
        assert!(v.iter().any(|x| x.abs() > 0.9 * stdv));
    }
}
