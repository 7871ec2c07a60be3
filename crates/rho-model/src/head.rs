//! `ClassificationHead`: dropout and a linear layer on the pooled features.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::tensor::{backend::Backend, Distribution, Tensor};

#[derive(Module, Debug)]
pub struct ClassificationHead<B: Backend> {
    pub dropout: Dropout,
    /// Burn stores the weight as [in, out]; PyTorch as [out, in] (the weight I/O transposes).
    pub proj: Linear<B>,
}

impl<B: Backend> ClassificationHead<B> {
    /// Weight N(0, 0.01), bias 0, as PySlowFast initialises a linear classifier.
    pub fn new(features: usize, classes: usize, dropout: f64, device: &B::Device) -> Self {
        let mut proj = LinearConfig::new(features, classes).init(device);
        proj.weight = Param::from_tensor(Tensor::random(
            [features, classes],
            Distribution::Normal(0.0, 0.01),
            device,
        ));
        proj.bias = Some(Param::from_tensor(Tensor::zeros([classes], device)));
        Self {
            dropout: DropoutConfig::new(dropout).init(),
            proj,
        }
    }

    pub fn forward(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        self.proj.forward(self.dropout.forward(features))
    }

    pub fn num_classes(&self) -> usize {
        self.proj.weight.dims()[1]
    }
}
