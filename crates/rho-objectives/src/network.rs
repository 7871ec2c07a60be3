//! `SslNetwork`: backbone, projection MLP and, per method, a predictor or prototypes.

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use rho_model::{Precision, ResNet3d};

use crate::mlp::ProjectionMlp;
use crate::prototypes::Prototypes;
use crate::similarity::l2_normalize;

#[derive(Module, Debug)]
pub struct SslNetwork<B: Backend> {
    pub backbone: ResNet3d<B>,
    pub projector: ProjectionMlp<B>,
    /// ρBYOL only.
    pub predictor: Option<ProjectionMlp<B>>,
    /// ρSwAV only.
    pub prototypes: Option<Prototypes<B>>,
}

impl<B: Backend> SslNetwork<B> {
    /// Projection z = g(f(x)) of one clip batch [B, 3, T, H, W] (not normalised).
    pub fn project(&self, clip: Tensor<B, 5>) -> Tensor<B, 2> {
        self.projector.forward(self.backbone.forward(clip))
    }

    /// Prediction q(z) for BYOL, or z itself when the network has no predictor.
    pub fn predict(&self, z: Tensor<B, 2>) -> Tensor<B, 2> {
        match &self.predictor {
            Some(p) => p.forward(z),
            None => z,
        }
    }

    /// [`project`](Self::project) with the projector's hidden activations.
    pub fn project_hidden(&self, clip: Tensor<B, 5>) -> (Tensor<B, 2>, Vec<Tensor<B, 2>>) {
        self.projector.forward_hidden(self.backbone.forward(clip))
    }

    /// [`predict`](Self::predict) with the predictor's hidden activations.
    pub fn predict_hidden(&self, z: Tensor<B, 2>) -> (Tensor<B, 2>, Vec<Tensor<B, 2>>) {
        match &self.predictor {
            Some(p) => p.forward_hidden(z),
            None => (z, Vec::new()),
        }
    }

    /// Folds pending BN running-statistic updates into the stored values (before reading them
    /// through a visitor, a record or an export).
    pub fn sync_running_stats(&self) {
        self.backbone.sync_running_stats();
        self.projector.sync_running_stats();
        if let Some(p) = &self.predictor {
            p.sync_running_stats();
        }
    }

    /// The same network with its convolutions and the MLPs' Linear layers computing in
    /// `precision` (mixed precision). SwAV's prototypes stay in full precision: their scores,
    /// divided by a temperature of 0.1, feed the Sinkhorn iterations and the softmax directly.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.backbone = self.backbone.with_precision(precision);
        self.projector.precision = precision;
        if let Some(p) = self.predictor.as_mut() {
            p.precision = precision;
        }
        self
    }

    /// L2-normalised projection.
    pub fn embed(&self, clip: Tensor<B, 5>) -> Tensor<B, 2> {
        l2_normalize(self.project(clip))
    }
}
