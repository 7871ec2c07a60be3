//! `Method`: one interface over ρMoCo, ρBYOL, ρSimCLR and ρSwAV.
//!
//! The training engine hands a method the online network and the V ≥ 2 clips of a batch (ρ
//! clips per video, or two crops of one clip for ρ = 1) and gets a loss and metrics back; the
//! method owns its state (target network, queue) and decides everything else.

use std::collections::BTreeMap;

use burn::config::Config;
use burn::tensor::{backend::AutodiffBackend, Tensor};
use rho_model::ResNet3d;
use serde::{Deserialize, Serialize};

use crate::aggregation::Aggregation;
use crate::byol_loss::negative_cosine_x2;
use crate::collectives::Collectives;
use crate::error::ObjectiveError;
use crate::infonce::{info_nce_multi_positive, info_nce_per_positive};
use crate::mlp::ProjectionMlpConfig;
use crate::momentum::{cosine_momentum, MomentumEncoder};
use crate::network::SslNetwork;
use crate::ntxent::nt_xent;
use crate::prototypes::Prototypes;
use crate::queue::{KeyQueue, KeyQueueState};
use crate::similarity::{embedding_std, l2_normalize, scalar};
use crate::swav::{swapped_prediction, SwavSettings};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MethodKind {
    Moco,
    Byol,
    Simclr,
    Swav,
}

/// Every knob of the four methods; [`MethodConfig::preset`] gives the paper's values.
#[derive(Config, Debug)]
pub struct MethodConfig {
    pub kind: MethodKind,
    /// Projection MLP: layers, hidden width, output width, BN.
    pub proj_layers: usize,
    pub proj_hidden: usize,
    pub proj_dim: usize,
    pub proj_bn: bool,
    /// Softmax temperature (MoCo, SimCLR, SwAV).
    #[config(default = 0.1)]
    pub temperature: f64,
    /// Mean (paper) or sum (code) over query clips.
    #[config(default = "Aggregation::Mean")]
    pub aggregation: Aggregation,
    /// MoCo / BYOL momentum m_base, annealed to 1 by a cosine.
    #[config(default = 0.994)]
    pub momentum_base: f64,
    /// MoCo queue length.
    #[config(default = 65536)]
    pub queue_len: usize,
    /// MoCo: the paper's eq. (1) (one softmax, positives summed) instead of the code's one row
    /// per positive.
    #[config(default = false)]
    pub multi_positive: bool,
    /// SimCLR: all pairs of clips instead of the code's consecutive pairs.
    #[config(default = false)]
    pub all_pairs: bool,
    /// BYOL predictor hidden width.
    #[config(default = 4096)]
    pub predictor_hidden: usize,
    /// SwAV prototypes.
    #[config(default = 1000)]
    pub prototypes: usize,
    #[config(default = 0.05)]
    pub sinkhorn_epsilon: f64,
    #[config(default = 3)]
    pub sinkhorn_iterations: usize,
    /// SwAV: the prototypes get no gradient before this (fractional) epoch.
    #[config(default = 1.0)]
    pub freeze_prototypes_epochs: f64,
}

impl MethodConfig {
    /// The paper's settings (spec §1.2, §4.1; SimCLR's MLP BN follows the paper, not the code).
    pub fn preset(kind: MethodKind) -> Self {
        match kind {
            MethodKind::Moco => Self::new(kind, 3, 2048, 128, false).with_momentum_base(0.994),
            MethodKind::Byol => Self::new(kind, 2, 4096, 256, true).with_momentum_base(0.996),
            MethodKind::Simclr => Self::new(kind, 3, 2048, 128, true),
            MethodKind::Swav => Self::new(kind, 3, 2048, 128, true),
        }
    }

    pub fn validate(&self) -> Result<(), ObjectiveError> {
        let bad = |m: String| Err(ObjectiveError::Config(m));
        if self.proj_layers == 0 || self.proj_dim == 0 || self.proj_hidden == 0 {
            return bad("the projection MLP needs ≥ 1 layer and positive widths".into());
        }
        if self.temperature <= 0.0 || self.sinkhorn_epsilon <= 0.0 {
            return bad("temperatures must be positive".into());
        }
        if !(0.0..=1.0).contains(&self.momentum_base) {
            return bad(format!(
                "momentum_base {} must be in [0, 1]",
                self.momentum_base
            ));
        }
        if self.kind == MethodKind::Moco && self.queue_len == 0 {
            return bad("MoCo needs a queue (queue_len > 0)".into());
        }
        if self.kind == MethodKind::Swav && self.prototypes == 0 {
            return bad("SwAV needs prototypes".into());
        }
        Ok(())
    }

    /// The online network for this method around `backbone`.
    pub fn build_network<B: burn::tensor::backend::Backend>(
        &self,
        backbone: ResNet3d<B>,
        device: &B::Device,
    ) -> SslNetwork<B> {
        let feat = backbone.feature_dim();
        let projector = ProjectionMlpConfig::new(feat, self.proj_hidden, self.proj_dim)
            .with_layers(self.proj_layers)
            .with_batch_norm(self.proj_bn)
            .init(device);
        let predictor = (self.kind == MethodKind::Byol).then(|| {
            ProjectionMlpConfig::new(self.proj_dim, self.predictor_hidden, self.proj_dim)
                .with_layers(2)
                .with_batch_norm(true)
                .init(device)
        });
        let prototypes = (self.kind == MethodKind::Swav)
            .then(|| Prototypes::new(self.prototypes, self.proj_dim, device));
        SslNetwork {
            backbone,
            projector,
            predictor,
            prototypes,
        }
    }
}

/// `acc + term`, starting from nothing.
pub(crate) fn accumulate<B: burn::tensor::backend::Backend>(
    acc: Option<Tensor<B, 1>>,
    term: Tensor<B, 1>,
) -> Option<Tensor<B, 1>> {
    Some(match acc {
        Some(a) => a + term,
        None => term,
    })
}

/// Where in training a step is.
#[derive(Debug, Clone, Copy)]
pub struct StepContext {
    /// Fractional epoch (epoch + iteration / iterations per epoch).
    pub epoch: f64,
    /// Total epochs E of the schedule.
    pub total_epochs: f64,
    /// Move the momentum encoder this step (once per optimiser step: false for the second and
    /// later micro-batches of an accumulated step).
    pub update_target: bool,
}

/// A step's loss (to back-propagate) and what is worth logging.
pub struct StepOutput<B: AutodiffBackend> {
    pub loss: Tensor<B, 1>,
    pub metrics: BTreeMap<&'static str, f64>,
}

/// A method with its state.
pub struct Method<B: AutodiffBackend> {
    pub config: MethodConfig,
    pub target: Option<MomentumEncoder<SslNetwork<B>>>,
    pub queue: Option<KeyQueue<B::InnerBackend>>,
}

impl<B: AutodiffBackend> Method<B> {
    /// State for `online`: a momentum copy for MoCo/BYOL (θ_m = θ at iteration 0), a queue for MoCo.
    pub fn new(
        config: MethodConfig,
        online: &SslNetwork<B>,
        device: &B::Device,
    ) -> Result<Self, ObjectiveError> {
        config.validate()?;
        let target = matches!(config.kind, MethodKind::Moco | MethodKind::Byol)
            .then(|| MomentumEncoder::new(online));
        let queue = (config.kind == MethodKind::Moco)
            .then(|| KeyQueue::new(config.queue_len, config.proj_dim, device));
        Ok(Self {
            config,
            target,
            queue,
        })
    }

    /// Per-step preparation of the online network: SwAV re-normalises its prototypes.
    pub fn prepare(&self, mut online: SslNetwork<B>) -> SslNetwork<B> {
        online.prototypes = online.prototypes.map(|p| p.normalized());
        online
    }

    /// Loss and metrics of one step on `clips` (V ≥ 2 tensors [B, 3, T, H, W]).
    pub fn step(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext,
        coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        if clips.len() < 2 {
            return Err(ObjectiveError::Shape(format!(
                "{} view(s) given; every method needs ≥ 2 (ρ clips, or two crops of one clip for ρ = 1)",
                clips.len()
            )));
        }
        let first = clips[0].dims();
        if let Some(c) = clips.iter().find(|c| c.dims() != first) {
            return Err(ObjectiveError::Shape(format!(
                "clips of one batch differ in shape: {first:?} vs {:?}",
                c.dims()
            )));
        }
        match self.config.kind {
            MethodKind::Moco => self.moco(online, clips, ctx, coll),
            MethodKind::Byol => self.byol(online, clips, ctx),
            MethodKind::Simclr => self.simclr(online, clips, coll),
            MethodKind::Swav => self.swav(online, clips, ctx, coll),
        }
    }

    fn momentum_targets(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext,
    ) -> Result<(f64, Vec<Tensor<B, 2>>), ObjectiveError> {
        let m = cosine_momentum(self.config.momentum_base, ctx.epoch, ctx.total_epochs);
        let target = self.target.as_mut().ok_or_else(|| {
            ObjectiveError::Config(format!(
                "{:?} needs a momentum encoder; build the method with Method::new",
                self.config.kind
            ))
        })?;
        if ctx.update_target {
            target.update(online, m);
        }
        // Each clip separately: BN statistics per clip batch, as the released code.
        let keys = clips
            .iter()
            .map(|c| l2_normalize(target.target.project(c.clone())).detach())
            .collect();
        Ok((m, keys))
    }

    fn moco(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext,
        coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        let (m, keys) = self.momentum_targets(online, clips, ctx)?;
        let queue = self.queue.as_mut().ok_or_else(|| {
            ObjectiveError::Config("MoCo needs its queue; build the method with Method::new".into())
        })?;
        let negatives = Tensor::<B, 2>::from_inner(queue.keys.clone());
        let t = self.config.temperature;
        let factor = self.config.aggregation.factor(clips.len());
        let (mut loss, mut pos, mut std) = (None, 0.0, 0.0);
        let mut q0 = None;
        for (i, clip) in clips.iter().enumerate() {
            let q = online.embed(clip.clone());
            let positives: Vec<Tensor<B, 2>> = keys
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, k)| k.clone())
                .collect();
            let li = if self.config.multi_positive {
                info_nce_multi_positive(q.clone(), &positives, negatives.clone(), t)
            } else {
                info_nce_per_positive(q.clone(), &positives, negatives.clone(), t)
            };
            pos += positives
                .iter()
                .map(|k| scalar((q.clone().detach() * k.clone()).sum_dim(1).mean()))
                .sum::<f64>()
                / positives.len() as f64;
            std += embedding_std(q.clone().detach());
            if q0.is_none() {
                q0 = Some(q.detach());
            }
            loss = accumulate(loss, li);
        }
        let v = clips.len() as f64;
        let neg = scalar(q0.expect("≥ 2 clips").matmul(negatives.transpose()).mean());
        for k in &keys {
            queue.enqueue(coll.all_gather(k.clone()).inner())?;
        }
        let loss = loss.expect("≥ 2 clips").mul_scalar(factor);
        let metrics = BTreeMap::from([
            ("loss", scalar(loss.clone().detach())),
            ("pos_sim", pos / v),
            ("neg_sim", neg),
            ("emb_std", std / v),
            ("momentum", m),
        ]);
        Ok(StepOutput { loss, metrics })
    }

    fn byol(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        let (m, targets) = self.momentum_targets(online, clips, ctx)?;
        let factor = self.config.aggregation.factor(clips.len());
        let (mut loss, mut std) = (None, 0.0);
        for (i, clip) in clips.iter().enumerate() {
            let z = online.project(clip.clone());
            let p = l2_normalize(online.predict(z.clone()));
            let others: Vec<&Tensor<B, 2>> = targets
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, t)| t)
                .collect();
            let mut li = None;
            for t in &others {
                let term = negative_cosine_x2(p.clone(), (*t).clone());
                li = accumulate(li, term);
            }
            let li = li.expect("≥ 2 clips").div_scalar(others.len() as f64);
            std += embedding_std(l2_normalize(z.detach()));
            loss = accumulate(loss, li);
        }
        let loss = loss.expect("≥ 2 clips").mul_scalar(factor);
        let v = clips.len() as f64;
        let l = scalar(loss.clone().detach());
        // −2·cos averaged: the mean positive cosine is −loss/2 (for the mean aggregation).
        let pos = -l / 2.0 / (factor * v);
        let metrics = BTreeMap::from([
            ("loss", l),
            ("pos_sim", pos),
            ("emb_std", std / v),
            ("momentum", m),
        ]);
        Ok(StepOutput { loss, metrics })
    }

    fn simclr(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        let z: Vec<Tensor<B, 2>> = clips.iter().map(|c| online.embed(c.clone())).collect();
        let v = z.len();
        let pairs: Vec<(usize, usize)> = if self.config.all_pairs {
            (0..v)
                .flat_map(|i| (i + 1..v).map(move |j| (i, j)))
                .collect()
        } else {
            (0..v - 1).map(|i| (i, i + 1)).collect()
        };
        let factor = self.config.aggregation.factor(pairs.len());
        let mut loss = None;
        let mut pos = 0.0;
        for &(a, b) in &pairs {
            let l = nt_xent(z[a].clone(), z[b].clone(), self.config.temperature, coll);
            pos += scalar(
                (z[a].clone().detach() * z[b].clone().detach())
                    .sum_dim(1)
                    .mean(),
            );
            loss = accumulate(loss, l);
        }
        let loss = loss.expect("≥ 1 pair").mul_scalar(factor);
        let std = z
            .iter()
            .map(|x| embedding_std(x.clone().detach()))
            .sum::<f64>()
            / v as f64;
        let metrics = BTreeMap::from([
            ("loss", scalar(loss.clone().detach())),
            ("pos_sim", pos / pairs.len() as f64),
            ("emb_std", std),
        ]);
        Ok(StepOutput { loss, metrics })
    }

    fn swav(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext,
        coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        let protos = online
            .prototypes
            .as_ref()
            .ok_or_else(|| ObjectiveError::Config("the SwAV network has no prototypes".into()))?;
        let frozen = ctx.epoch < self.config.freeze_prototypes_epochs;
        let z: Vec<Tensor<B, 2>> = clips.iter().map(|c| online.embed(c.clone())).collect();
        let scores: Vec<Tensor<B, 2>> =
            z.iter().map(|x| protos.scores(x.clone(), frozen)).collect();
        let settings = SwavSettings {
            temperature: self.config.temperature,
            epsilon: self.config.sinkhorn_epsilon,
            iterations: self.config.sinkhorn_iterations,
            assignment_views: 2,
        };
        let loss = swapped_prediction(&scores, settings, coll);
        let std = z
            .iter()
            .map(|x| embedding_std(x.clone().detach()))
            .sum::<f64>()
            / z.len() as f64;
        let metrics = BTreeMap::from([
            ("loss", scalar(loss.clone().detach())),
            ("emb_std", std),
            ("prototypes_frozen", if frozen { 1.0 } else { 0.0 }),
        ]);
        Ok(StepOutput { loss, metrics })
    }

    /// The queue for a checkpoint (MoCo).
    pub fn queue_state(&self) -> Option<KeyQueueState> {
        self.queue.as_ref().map(|q| q.state())
    }

    /// Restores the queue from a checkpoint.
    pub fn load_queue_state(
        &mut self,
        s: &KeyQueueState,
        device: &B::Device,
    ) -> Result<(), ObjectiveError> {
        self.queue = Some(KeyQueue::from_state(s, device)?);
        Ok(())
    }
}
