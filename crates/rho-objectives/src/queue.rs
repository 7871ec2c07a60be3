//! `KeyQueue`: MoCo's FIFO ring buffer of negative keys (spec §2.2).

use burn::tensor::{backend::Backend, Distribution, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::error::ObjectiveError;

/// K keys of dimension d, written in place at a pointer that wraps around.
#[derive(Debug, Clone)]
pub struct KeyQueue<B: Backend> {
    /// [K, d]
    pub keys: Tensor<B, 2>,
    pub ptr: usize,
}

/// What a checkpoint stores of the queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyQueueState {
    pub len: usize,
    pub dim: usize,
    pub ptr: usize,
    pub keys: Vec<f32>,
}

impl<B: Backend> KeyQueue<B> {
    /// MoCo's init: uniform in ±1/√(d/3), not normalised.
    pub fn new(len: usize, dim: usize, device: &B::Device) -> Self {
        let stdv = 1.0 / (dim as f64 / 3.0).sqrt();
        Self {
            keys: Tensor::random([len, dim], Distribution::Uniform(-stdv, stdv), device),
            ptr: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.dims()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `keys` [n, d] at the pointer, wrapping around the end; n may exceed nothing but K.
    pub fn enqueue(&mut self, keys: Tensor<B, 2>) -> Result<(), ObjectiveError> {
        let [n, d] = keys.dims();
        let [len, qd] = self.keys.dims();
        if d != qd {
            return Err(ObjectiveError::Shape(format!(
                "queue holds {qd}-d keys, got {d}-d"
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
        self.ptr = (self.ptr + n) % len;
        Ok(())
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
        }
    }

    pub fn from_state(s: &KeyQueueState, device: &B::Device) -> Result<Self, ObjectiveError> {
        if s.keys.len() != s.len * s.dim || s.ptr >= s.len.max(1) {
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
            q.enqueue(Tensor::from_data(TensorData::new(v, [2, 1]), &dev))
                .unwrap();
        }
        // 8 keys through a ring of 5: positions hold 5, 6, 7, 3, 4 and the pointer is at 3.
        assert_eq!(rows(&q), [5.0, 6.0, 7.0, 3.0, 4.0]);
        assert_eq!(q.ptr, 3);
        let back = KeyQueue::<Flex>::from_state(&q.state(), &dev).unwrap();
        assert_eq!(rows(&back), rows(&q));
        assert_eq!(back.ptr, 3);
        assert!(q.enqueue(Tensor::zeros([6, 1], &dev)).is_err());
        assert!(q.enqueue(Tensor::zeros([1, 2], &dev)).is_err());
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
