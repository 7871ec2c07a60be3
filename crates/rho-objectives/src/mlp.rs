//! `ProjectionMlp`: the projection head and the BYOL predictor (spec §1.2).
//!
//! Linear(in→H), then (L−1) × [optional BN1d → ReLU → Linear], the last Linear to d. With BN,
//! every Linear but the last has no bias; without BN every Linear has one. Linear weights use
//! PySlowFast's "c2 xavier fill" (kaiming-uniform, a = 1: U(±√(3/fan_in))), biases 0.

use burn::config::Config;
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{backend::Backend, Distribution, Tensor};
use rho_model::BatchNorm3d;

#[derive(Config, Debug)]
pub struct ProjectionMlpConfig {
    pub input: usize,
    pub hidden: usize,
    pub output: usize,
    /// Number of Linear layers (≥ 1).
    #[config(default = 3)]
    pub layers: usize,
    /// BN1d after every Linear but the last.
    #[config(default = false)]
    pub batch_norm: bool,
}

#[derive(Module, Debug)]
pub struct ProjectionMlp<B: Backend> {
    pub linears: Vec<Linear<B>>,
    pub norms: Vec<BatchNorm3d<B>>,
}

impl ProjectionMlpConfig {
    pub fn init<B: Backend>(&self, device: &B::Device) -> ProjectionMlp<B> {
        assert!(
            self.layers >= 1,
            "a projection MLP needs at least one layer"
        );
        let mut linears = Vec::new();
        let mut norms = Vec::new();
        for i in 0..self.layers {
            let last = i + 1 == self.layers;
            let fin = if i == 0 { self.input } else { self.hidden };
            let fout = if last { self.output } else { self.hidden };
            let bias = last || !self.batch_norm;
            let mut lin = LinearConfig::new(fin, fout).with_bias(bias).init(device);
            let bound = (3.0 / fin as f64).sqrt();
            lin.weight = Param::from_tensor(Tensor::random(
                [fin, fout],
                Distribution::Uniform(-bound, bound),
                device,
            ));
            if bias {
                lin.bias = Some(Param::from_tensor(Tensor::zeros([fout], device)));
            }
            linears.push(lin);
            if !last && self.batch_norm {
                norms.push(BatchNorm3d::new(fout, 1e-5, 0.1, device));
            }
        }
        ProjectionMlp { linears, norms }
    }
}

impl<B: Backend> ProjectionMlp<B> {
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let n = self.linears.len();
        let mut x = x;
        for (i, lin) in self.linears.iter().enumerate() {
            x = lin.forward(x);
            if i + 1 < n {
                if let Some(bn) = self.norms.get(i) {
                    x = bn.forward(x);
                }
                x = relu(x);
            }
        }
        x
    }

    pub fn output_dim(&self) -> usize {
        self.linears.last().map(|l| l.weight.dims()[1]).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn bias_rules_and_shapes() {
        let dev = Default::default();
        let with_bn = ProjectionMlpConfig::new(16, 32, 8)
            .with_layers(3)
            .with_batch_norm(true)
            .init::<Flex>(&dev);
        let biases: Vec<bool> = with_bn.linears.iter().map(|l| l.bias.is_some()).collect();
        assert_eq!(biases, [false, false, true]);
        assert_eq!(with_bn.norms.len(), 2);
        let no_bn = ProjectionMlpConfig::new(16, 32, 8)
            .with_layers(2)
            .init::<Flex>(&dev);
        assert!(no_bn.linears.iter().all(|l| l.bias.is_some()));
        assert!(no_bn.norms.is_empty());
        let y = no_bn.forward(Tensor::ones([4, 16], &dev));
        assert_eq!(y.dims(), [4, 8]);
        // Kaiming-uniform a = 1: every weight within ±sqrt(3 / fan_in).
        let w = no_bn.linears[1]
            .weight
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        let bound = (3.0f32 / 32.0).sqrt();
        assert!(w.iter().all(|v| v.abs() <= bound));
        assert!(w.iter().any(|v| v.abs() > 0.8 * bound));
    }
}
