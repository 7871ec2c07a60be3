//! `ProjectionMlp`: the projection head and the BYOL predictor (docs/method.md §1.2).
//!
//! Linear(in→H), then (L−1) × [optional BN1d → ReLU → Linear], the last Linear to d. With BN,
//! every Linear but the last has no bias; without BN every Linear has one. An optional output
//! BN1d without scale and shift (SimSiam's, docs/method.md "Output BatchNorm") follows the last
//! Linear, which then has no bias either. The Linear layers start as [`HeadInit`] says:
//! PySlowFast's "c2 xavier fill" by default, or PyTorch's own `nn.Linear` init, which learns
//! far better at small scale (docs/method.md, "Head initialisation").

use burn::config::Config;
use burn::module::{Initializer, Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::relu;
use burn::tensor::{backend::Backend, Tensor};
use rho_model::{BatchNorm, Precision};
use serde::{Deserialize, Serialize};

/// How the heads' Linear layers are initialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadInit {
    /// PySlowFast's `c2_xavier_fill` (the paper's code): weights kaiming-uniform with a = 1,
    /// U(±√(3/fan_in)); biases 0.
    #[default]
    C2Xavier,
    /// PyTorch's `nn.Linear` default (also Burn's `LinearConfig` default): weights and biases
    /// U(±1/√fan_in).
    Pytorch,
}

impl HeadInit {
    fn initializer(self) -> Initializer {
        let gain = match self {
            HeadInit::C2Xavier => 1.0,
            HeadInit::Pytorch => 1.0 / 3f64.sqrt(),
        };
        Initializer::KaimingUniform {
            gain,
            fan_out_only: false,
        }
    }
}

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
    #[config(default = "HeadInit::C2Xavier")]
    pub init: HeadInit,
    /// A non-affine BN1d after the last Linear (which then has no bias).
    #[config(default = false)]
    pub output_norm: bool,
}

#[derive(Module, Debug)]
pub struct ProjectionMlp<B: Backend> {
    pub linears: Vec<Linear<B>>,
    pub norms: Vec<BatchNorm<B>>,
    /// The non-affine output BatchNorm, when configured.
    pub output_norm: Option<BatchNorm<B>>,
    /// The dtype the Linear layers compute in (BatchNorm stays in the network's own).
    #[module(skip)]
    pub precision: Precision,
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
            let bias = if last {
                !self.output_norm
            } else {
                !self.batch_norm
            };
            let mut lin = LinearConfig::new(fin, fout)
                .with_bias(bias)
                .with_initializer(self.init.initializer())
                .init(device);
            // Draw now: Burn initialises lazily, on first use, which would let a seeded run's
            // draws interleave with other threads' (data-parallel ranks) or move with the order
            // of first use.
            lin.weight = Param::from_tensor(lin.weight.val());
            lin.bias = lin.bias.map(|b| match self.init {
                HeadInit::C2Xavier => Param::from_tensor(Tensor::zeros([fout], device)),
                HeadInit::Pytorch => Param::from_tensor(b.val()),
            });
            linears.push(lin);
            if !last && self.batch_norm {
                norms.push(BatchNorm::new(fout, 1e-5, 0.1, device));
            }
        }
        let output_norm = self
            .output_norm
            .then(|| BatchNorm::non_affine(self.output, 1e-5, 0.1, device));
        ProjectionMlp {
            linears,
            norms,
            output_norm,
            precision: Precision::F32,
        }
    }
}

impl<B: Backend> ProjectionMlp<B> {
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.forward_hidden(x).0
    }

    /// The output and every hidden activation (after its ReLU), for the dead-unit diagnostic.
    pub fn forward_hidden(&self, x: Tensor<B, 2>) -> (Tensor<B, 2>, Vec<Tensor<B, 2>>) {
        let n = self.linears.len();
        let mut x = x;
        let mut hidden = Vec::with_capacity(n.saturating_sub(1));
        for (i, lin) in self.linears.iter().enumerate() {
            x = self.precision.linear(lin, x);
            if i + 1 < n {
                if let Some(bn) = self.norms.get(i) {
                    x = bn.forward(x);
                }
                x = relu(x);
                hidden.push(x.clone());
            }
        }
        if let Some(bn) = &self.output_norm {
            x = bn.forward(x);
        }
        (x, hidden)
    }

    /// Folds pending BN running-statistic updates into the stored values.
    pub fn sync_running_stats(&self) {
        self.norms
            .iter()
            .chain(&self.output_norm)
            .for_each(|n| n.sync_running_stats());
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
        assert!(no_bn.linears[1]
            .bias
            .as_ref()
            .unwrap()
            .val()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|b| *b == 0.0));
        // PyTorch's init: weights and biases within ±1/√fan_in, biases not zero.
        let torch = ProjectionMlpConfig::new(16, 32, 8)
            .with_layers(2)
            .with_init(HeadInit::Pytorch)
            .init::<Flex>(&dev);
        let bound = 1.0f32 / 32f32.sqrt();
        let vals = |t: Tensor<Flex, 1>| t.into_data().to_vec::<f32>().unwrap();
        let w = vals(torch.linears[1].weight.val().reshape([32 * 8]));
        let b = vals(torch.linears[1].bias.as_ref().unwrap().val());
        assert!(w.iter().chain(&b).all(|v| v.abs() <= bound));
        assert!(w.iter().any(|v| v.abs() > 0.8 * bound));
        assert!(b.iter().any(|v| *v != 0.0));
    }

    #[test]
    fn output_norm_drops_the_last_bias_and_standardises_the_output() {
        use burn::backend::Autodiff;
        use burn::tensor::Distribution;
        let dev = Default::default();
        let mlp = ProjectionMlpConfig::new(16, 32, 8)
            .with_layers(2)
            .with_batch_norm(true)
            .with_output_norm(true)
            .init::<Autodiff<Flex>>(&dev);
        let biases: Vec<bool> = mlp.linears.iter().map(|l| l.bias.is_some()).collect();
        assert_eq!(biases, [false, false]);
        assert!(mlp.output_norm.as_ref().is_some_and(|bn| !bn.affine));
        let x = Tensor::random([6, 16], Distribution::Normal(0.0, 1.0), &dev);
        let y = mlp.forward(x).to_data().to_vec::<f32>().unwrap();
        for ch in 0..8 {
            let mean = (0..6).map(|i| y[i * 8 + ch] as f64).sum::<f64>() / 6.0;
            let var = (0..6)
                .map(|i| (y[i * 8 + ch] as f64 - mean).powi(2))
                .sum::<f64>()
                / 6.0;
            assert!(
                mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
                "{ch}: {mean} {var}"
            );
        }
    }

    /// A network recorded before the output BatchNorm existed (a checkpoint of an older rho)
    /// has no `output_norm` in its projectors and no `affine` in its BatchNorms; both load as
    /// absent (serde fills a missing `Option` or empty record), so such a checkpoint resumes.
    /// Checkpoints are NamedMpk, self-describing as JSON is; JSON lets the test delete the fields.
    #[test]
    fn a_record_from_before_the_output_norm_loads_unchanged() {
        use burn::record::{FullPrecisionSettings, PrettyJsonFileRecorder, Recorder};
        use burn::tensor::Distribution;
        let dev = Default::default();
        let cfg = ProjectionMlpConfig::new(16, 32, 8)
            .with_layers(2)
            .with_batch_norm(true);
        let mlp = cfg.init::<Flex>(&dev);
        let rec = PrettyJsonFileRecorder::<FullPrecisionSettings>::new();
        let path = std::env::temp_dir().join(format!("rho_old_mlp_{}", std::process::id()));
        Recorder::<Flex>::record(&rec, mlp.clone().into_record(), path.clone()).unwrap();
        let file = path.with_extension("json");
        let text = std::fs::read_to_string(&file).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let item = json["item"].as_object_mut().unwrap();
        assert!(item.remove("output_norm").is_some());
        for bn in item["norms"].as_array_mut().unwrap() {
            assert!(bn.as_object_mut().unwrap().remove("affine").is_some());
        }
        std::fs::write(&file, json.to_string()).unwrap();
        let old = Recorder::<Flex>::load(&rec, path, &dev);
        std::fs::remove_file(&file).ok();
        let loaded = cfg.init::<Flex>(&dev).load_record(old.unwrap());
        assert!(loaded.output_norm.is_none() && loaded.norms.iter().all(|bn| bn.affine));
        let x = Tensor::<Flex, 2>::random([6, 16], Distribution::Normal(0.0, 1.0), &dev);
        let want = mlp.forward(x.clone()).into_data().to_vec::<f32>().unwrap();
        assert_eq!(loaded.forward(x).into_data().to_vec::<f32>().unwrap(), want);
    }
}
