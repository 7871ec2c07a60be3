//! `ResNet3d`: stem → residual stages → global average pool → optional classification head.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};

use crate::block::BlockSpec;
use crate::config::ResNet3dConfig;
use crate::conv::BnSettings;
use crate::error::ModelError;
use crate::head::ClassificationHead;
use crate::stage::ResStage;
use crate::stem::Stem;

#[derive(Module, Debug)]
pub struct ResNet3d<B: Backend> {
    pub stem: Stem<B>,
    pub stages: Vec<ResStage<B>>,
    pub head: Option<ClassificationHead<B>>,
    /// Preset or config name, for messages.
    pub arch: String,
    pub in_channels: usize,
}

impl ResNet3dConfig {
    /// Builds the network with He (fan-out) conv init, unit BN and an N(0, 0.01) head.
    pub fn init<B: Backend>(&self, device: &B::Device) -> ResNet3d<B> {
        self.try_init(device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`init`](Self::init), but reports an invalid configuration as an error.
    pub fn try_init<B: Backend>(&self, device: &B::Device) -> Result<ResNet3d<B>, ModelError> {
        self.validate()?;
        let bn = BnSettings {
            eps: self.bn_eps,
            momentum: self.bn_momentum,
        };
        let stem = Stem::new(&self.stem, self.in_channels, bn, device);
        let mut cin = self.stem.width;
        let stages = self
            .stages
            .iter()
            .map(|s| {
                let spec = BlockSpec {
                    kind: self.block,
                    factor: self.factor,
                    cin,
                    inner: s.inner,
                    cout: s.out,
                    temporal_kernel: s.temporal_kernel,
                    stride: [s.temporal_stride, s.spatial_stride, s.spatial_stride],
                    basic_temporal_both: self.basic_temporal_both,
                    bn,
                };
                cin = s.out;
                ResStage::new(spec, s.depth, device)
            })
            .collect();
        let head = self
            .num_classes
            .map(|k| ClassificationHead::new(self.feature_dim(), k, self.dropout, device));
        Ok(ResNet3d {
            stem,
            stages,
            head,
            arch: self.name.clone(),
            in_channels: self.in_channels,
        })
    }
}

impl<B: Backend> ResNet3d<B> {
    /// Pooled features [N, C_last] ("pool5"): global average over T, H, W.
    ///
    /// Panics with the message of [`check_input`](Self::check_input) on a wrong shape; use
    /// [`try_features`](Self::try_features) for input a user controls.
    pub fn forward(&self, x: Tensor<B, 5>) -> Tensor<B, 2> {
        self.try_features(x).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_features(&self, x: Tensor<B, 5>) -> Result<Tensor<B, 2>, ModelError> {
        self.check_input(&x.dims())?;
        Ok(self.pool(self.feature_map(x)))
    }

    /// The same network with every convolution computed by `strategy` (benchmarks and tests
    /// compare the host kernels with the backend's own; networks pick theirs when built).
    pub fn with_conv_strategy(self, strategy: crate::ConvStrategy) -> Self {
        self.map_units(|unit| unit.strategy = strategy)
    }

    /// The same network with its BatchNorms on `strategy` (tests and benchmarks compare the
    /// fused host kernels with composed tensor ops this way).
    pub fn with_norm_strategy(self, strategy: crate::NormStrategy) -> Self {
        self.map_units(|unit| {
            unit.bn.strategy = strategy;
            if let Some(s) = unit.spatial.as_mut() {
                s.bn.strategy = strategy;
            }
        })
    }

    /// The same network with its convolutions computing in `precision` (mixed precision; the
    /// parameters and BatchNorm keep the network's dtype).
    pub fn with_precision(self, precision: crate::Precision) -> Self {
        self.map_units(|unit| unit.precision = precision)
    }

    /// The precision of the convolutions (all units share it).
    pub fn precision(&self) -> crate::Precision {
        self.stem.unit.precision
    }

    fn map_units(mut self, mut f: impl FnMut(&mut crate::ConvBn<B>)) -> Self {
        f(&mut self.stem.unit);
        for block in self.stages.iter_mut().flat_map(|s| s.blocks.iter_mut()) {
            let units = [
                Some(&mut block.a),
                Some(&mut block.b),
                block.c.as_mut(),
                block.shortcut.as_mut(),
            ];
            units.into_iter().flatten().for_each(&mut f);
        }
        self
    }

    /// The res5 feature map [N, C, T', H', W'].
    pub fn feature_map(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        let x = self.stem.forward(x);
        self.stages.iter().fold(x, |x, s| s.forward(x))
    }

    /// Global average pool over T, H, W.
    pub fn pool(&self, map: Tensor<B, 5>) -> Tensor<B, 2> {
        let [n, c, t, h, w] = map.dims();
        map.reshape([n, c, t * h * w]).mean_dim(2).reshape([n, c])
    }

    /// Features and, when the network has a head, logits.
    pub fn try_forward_with_logits(
        &self,
        x: Tensor<B, 5>,
    ) -> Result<(Tensor<B, 2>, Option<Tensor<B, 2>>), ModelError> {
        let f = self.try_features(x)?;
        let logits = self.head.as_ref().map(|h| h.forward(f.clone()));
        Ok((f, logits))
    }

    /// Logits of the classification head; an error when the network has none.
    pub fn try_logits(&self, x: Tensor<B, 5>) -> Result<Tensor<B, 2>, ModelError> {
        match self.try_forward_with_logits(x)? {
            (_, Some(l)) => Ok(l),
            (_, None) => Err(ModelError::Config(format!(
                "{} was built without a classification head (set num_classes)",
                self.arch
            ))),
        }
    }

    /// Checks an input shape [N, C, T, H, W] against the network.
    pub fn check_input(&self, dims: &[usize]) -> Result<(), ModelError> {
        let err = |reason: String| {
            Err(ModelError::InputShape {
                arch: self.arch.clone(),
                got: dims.to_vec(),
                reason,
            })
        };
        if dims.len() != 5 {
            return err("expected 5 dims [N, C, T, H, W]".into());
        }
        if dims[0] == 0 {
            return err("the batch is empty".into());
        }
        if dims[1] != self.in_channels {
            return err(format!(
                "expected {} channels in dim 1 (layout [N, C, T, H, W]); is the clip [N, T, C, H, W] or [N, T, H, W, C]?",
                self.in_channels
            ));
        }
        if dims[2..].contains(&0) {
            return err("T, H and W must be at least 1".into());
        }
        Ok(())
    }

    /// Width of the pooled features.
    pub fn feature_dim(&self) -> usize {
        self.stages
            .last()
            .and_then(|s| s.blocks.last())
            .map(|b| b.c.as_ref().unwrap_or(&b.b).out_channels())
            .unwrap_or_else(|| self.stem.unit.out_channels())
    }

    /// Every BatchNorm of the network, in traversal order.
    pub fn batch_norms(&self) -> Vec<&crate::norm::BatchNorm<B>> {
        let mut bns = Vec::new();
        self.stem.unit.collect_bn(&mut bns);
        for b in self.stages.iter().flat_map(|s| &s.blocks) {
            for u in [Some(&b.a), Some(&b.b), b.c.as_ref(), b.shortcut.as_ref()]
                .into_iter()
                .flatten()
            {
                u.collect_bn(&mut bns);
            }
        }
        bns
    }

    /// Folds pending BatchNorm running-statistic updates (call before exporting weights).
    pub fn sync_running_stats(&self) {
        self.batch_norms()
            .iter()
            .for_each(|bn| bn.sync_running_stats());
    }

    /// Number of scalar parameters (BN running statistics excluded).
    pub fn num_params(&self) -> usize {
        struct Count(usize);
        impl<B: Backend> burn::module::ModuleVisitor<B> for Count {
            fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<B, D>>) {
                self.0 += p.shape().num_elements();
            }
        }
        let mut c = Count(0);
        self.visit(&mut c);
        // Each BN carries two running vectors of its width; they are state, not parameters.
        let bns = self.batch_norms();
        c.0 - bns.iter().map(|b| 2 * b.channels()).sum::<usize>()
    }
}

impl<B: Backend> crate::conv::ConvBn<B> {
    pub(crate) fn collect_bn<'a>(&'a self, out: &mut Vec<&'a crate::norm::BatchNorm<B>>) {
        if let Some(s) = &self.spatial {
            out.push(&s.bn);
        }
        out.push(&self.bn);
    }
}
