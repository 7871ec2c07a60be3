//! `Method`: one interface over ρMoCo, ρBYOL, ρSimCLR and ρSwAV.
//!
//! The training engine hands a method the online network and the V ≥ 2 clips of a batch (ρ
//! clips per video, or two crops of one clip for ρ = 1) and gets a loss and metrics back; the
//! method owns its state (target network, queue) and decides everything else.

use std::collections::BTreeMap;

use burn::config::Config;
use burn::tensor::{backend::AutodiffBackend, Bool, Tensor, TensorData};
use rho_model::ResNet3d;
use serde::{Deserialize, Serialize};

use crate::aggregation::Aggregation;
use crate::byol_loss::negative_cosine_x2;
use crate::collectives::Collectives;
use crate::error::ObjectiveError;
use crate::infonce::{info_nce_multi_positive, info_nce_per_positive};
use crate::mlp::{HeadInit, ProjectionMlpConfig};
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
#[derive(Config, Debug, PartialEq)]
pub struct MethodConfig {
    pub kind: MethodKind,
    /// Projection MLP: layers, hidden width, output width, BN.
    pub proj_layers: usize,
    pub proj_hidden: usize,
    pub proj_dim: usize,
    pub proj_bn: bool,
    /// A non-affine BatchNorm on the projector's output (SimSiam's; docs/method.md "Output
    /// BatchNorm"). Not the paper's; a lever tried for ρBYOL.
    #[config(default = false)]
    pub proj_out_bn: bool,
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
    /// How the projector's and predictor's Linear layers start.
    #[config(default = "HeadInit::C2Xavier")]
    pub head_init: HeadInit,
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
    /// MoCo: a query's own video is no negative (its keys from earlier epochs are left out of
    /// the softmax). Matters once the queue holds more than an epoch of keys.
    #[config(default = true)]
    pub exclude_own_video: bool,
    /// MoCo: shuffle-BN in the key encoder. On several devices the keys are shuffled across
    /// the ranks (each rank's BatchNorm sees a random slice of the global batch); on one
    /// device the key batch is permuted and split into `shuffle_bn_splits` sub-batches, each
    /// with its own BatchNorm statistics.
    #[config(default = false)]
    pub shuffle_bn: bool,
    #[config(default = 2)]
    pub shuffle_bn_splits: usize,
    /// A method registered under this name ([`crate::registry`]) instead of `kind`'s own
    /// objective; `kind` then only gives the preset heads and constants.
    #[config(default = "None")]
    pub objective: Option<String>,
}

impl MethodConfig {
    /// The paper's settings (docs/method.md §1.2, §4.1; SimCLR's MLP BN follows the paper, not
    /// the code).
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
        for (name, v) in [
            ("temperature", self.temperature),
            ("sinkhorn_epsilon", self.sinkhorn_epsilon),
        ] {
            if v.is_nan() || v <= 0.0 {
                return bad(format!("{name} must be positive (got {v})"));
            }
        }
        if !(0.0..=1.0).contains(&self.momentum_base) {
            return bad(format!(
                "momentum_base {} must be in [0, 1]",
                self.momentum_base
            ));
        }
        for (name, v, max) in [
            ("proj_layers", self.proj_layers, 64),
            ("proj_hidden", self.proj_hidden, 1 << 16),
            ("proj_dim", self.proj_dim, 1 << 16),
            ("predictor_hidden", self.predictor_hidden, 1 << 16),
            ("prototypes", self.prototypes, 1 << 20),
            ("queue_len", self.queue_len, 1 << 24),
            ("sinkhorn_iterations", self.sinkhorn_iterations, 1 << 16),
            ("shuffle_bn_splits", self.shuffle_bn_splits, 1 << 16),
        ] {
            if v > max {
                return bad(format!("{name} = {v} is larger than rho supports ({max})"));
            }
        }
        if self.kind == MethodKind::Moco && self.queue_len == 0 {
            return bad("MoCo needs a queue (queue_len > 0)".into());
        }
        if self.kind == MethodKind::Swav && self.prototypes == 0 {
            return bad("SwAV needs prototypes".into());
        }
        if self.kind == MethodKind::Swav && self.sinkhorn_iterations == 0 {
            return bad("SwAV's Sinkhorn needs sinkhorn_iterations ≥ 1".into());
        }
        if self.shuffle_bn && self.kind != MethodKind::Moco {
            return bad(
                "shuffle_bn is MoCo's (its key encoder); turn it off for other methods".into(),
            );
        }
        if self.shuffle_bn && self.shuffle_bn_splits == 0 {
            return bad("shuffle_bn_splits must be at least 1".into());
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
            .with_output_norm(self.proj_out_bn)
            .with_init(self.head_init)
            .init(device);
        let predictor = (self.kind == MethodKind::Byol).then(|| {
            ProjectionMlpConfig::new(self.proj_dim, self.predictor_hidden, self.proj_dim)
                .with_layers(2)
                .with_batch_norm(true)
                .with_init(self.head_init)
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
pub struct StepContext<'a> {
    /// Fractional epoch of the schedules (optimiser steps / iterations per epoch).
    pub epoch: f64,
    /// Total epochs E of the schedule.
    pub total_epochs: f64,
    /// Move the momentum encoder this step (once per optimiser step: false for the second and
    /// later micro-batches of an accumulated step).
    pub update_target: bool,
    /// The step's index and the run's seed: per-step randomness (shuffle-BN), identical on
    /// every rank and after a resume.
    pub step: u64,
    pub seed: u64,
    /// The dataset index of each row's video (MoCo's own-video exclusion), if known.
    pub videos: Option<&'a [u64]>,
}

impl StepContext<'static> {
    /// A context for tests and single calls: step 0, seed 0, videos unknown.
    pub fn at(epoch: f64, total_epochs: f64) -> Self {
        Self {
            epoch,
            total_epochs,
            update_target: true,
            step: 0,
            seed: 0,
            videos: None,
        }
    }
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
        ctx: StepContext<'_>,
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
        if let Some(v) = ctx.videos.filter(|v| v.len() != first[0]) {
            return Err(ObjectiveError::Shape(format!(
                "{} video ids for a batch of {}",
                v.len(),
                first[0]
            )));
        }
        match self.config.kind {
            MethodKind::Moco => self.moco(online, clips, ctx, coll),
            MethodKind::Byol => self.byol(online, clips, ctx, coll),
            MethodKind::Simclr => self.simclr(online, clips, coll),
            MethodKind::Swav => self.swav(online, clips, ctx, coll),
        }
    }

    /// Moves the target (once per optimiser step) and computes its L2-normalised projections of
    /// every clip, each clip batch separately (BN statistics per clip batch, as the released
    /// code), with shuffle-BN when the method asks for it.
    fn momentum_targets(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext<'_>,
        coll: &dyn Collectives<B>,
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
        let net = &target.target;
        let shuffle = self
            .config
            .shuffle_bn
            .then_some(self.config.shuffle_bn_splits);
        let keys = clips
            .iter()
            .enumerate()
            .map(|(v, c)| {
                let salt = (ctx.seed, ctx.step, v as u64);
                match shuffle {
                    Some(splits) => crate::shuffle_bn::keys(net, c, splits, salt, coll),
                    None => Ok(l2_normalize(net.project(c.clone())).detach()),
                }
            })
            .collect::<Result<_, _>>()?;
        Ok((m, keys))
    }

    fn moco(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext<'_>,
        coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        let (m, keys) = self.momentum_targets(online, clips, ctx, coll)?;
        let queue = self.queue.as_mut().ok_or_else(|| {
            ObjectiveError::Config("MoCo needs its queue; build the method with Method::new".into())
        })?;
        let negatives = Tensor::<B, 2>::from_inner(queue.keys.clone());
        let videos: Vec<i64> = ctx
            .videos
            .map(|v| v.iter().map(|&x| x as i64).collect())
            .unwrap_or_default();
        let device = clips[0].device();
        let excluded = self
            .config
            .exclude_own_video
            .then(|| queue.own_video_mask(&videos))
            .flatten()
            .map(|d| Tensor::<B, 2, Bool>::from_data(d, &device));
        let t = self.config.temperature;
        let factor = self.config.aggregation.factor(clips.len());
        let (mut loss, mut queries, mut hidden) = (None, Vec::new(), Vec::new());
        for (i, clip) in clips.iter().enumerate() {
            let (z, h) = online.project_hidden(clip.clone());
            if i == 0 {
                hidden = h;
            }
            let q = l2_normalize(z);
            let positives: Vec<Tensor<B, 2>> = keys
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, k)| k.clone())
                .collect();
            let li = if self.config.multi_positive {
                info_nce_multi_positive(
                    q.clone(),
                    &positives,
                    negatives.clone(),
                    t,
                    excluded.clone(),
                )
            } else {
                info_nce_per_positive(
                    q.clone(),
                    &positives,
                    negatives.clone(),
                    t,
                    excluded.clone(),
                )
            };
            queries.push(q.detach());
            loss = accumulate(loss, li);
        }
        let neg = scalar(queries[0].clone().matmul(negatives.transpose()).mean());
        for k in &keys {
            enqueue_global(queue, k, &videos, coll)?;
        }
        let loss = loss.expect("≥ 2 clips").mul_scalar(factor);
        let mut metrics = diagnostics(&queries, &keys, &hidden);
        metrics.extend([
            ("loss", scalar(loss.clone().detach())),
            ("neg_sim", neg),
            ("momentum", m),
        ]);
        Ok(StepOutput { loss, metrics })
    }

    fn byol(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext<'_>,
        coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        let (m, targets) = self.momentum_targets(online, clips, ctx, coll)?;
        let factor = self.config.aggregation.factor(clips.len());
        let (mut loss, mut preds, mut hidden, mut std) = (None, Vec::new(), Vec::new(), 0.0);
        for (i, clip) in clips.iter().enumerate() {
            let (z, mut h) = online.project_hidden(clip.clone());
            let (p, hp) = online.predict_hidden(z.clone());
            if i == 0 {
                h.extend(hp);
                hidden = h;
            }
            let p = l2_normalize(p);
            let others: Vec<&Tensor<B, 2>> = targets
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, t)| t)
                .collect();
            let mut li = None;
            for t in &others {
                li = accumulate(li, negative_cosine_x2(p.clone(), (*t).clone()));
            }
            let li = li
                .expect("≥ 2 clips")
                .mul_scalar((others.len() as f64).recip());
            std += embedding_std(l2_normalize(z.detach()));
            preds.push(p.detach());
            loss = accumulate(loss, li);
        }
        let loss = loss.expect("≥ 2 clips").mul_scalar(factor);
        let mut metrics = diagnostics(&preds, &targets, &hidden);
        // The collapse monitor of BYOL watches the projections (the predictions follow them).
        metrics.insert("emb_std", std / clips.len() as f64);
        metrics.extend([("loss", scalar(loss.clone().detach())), ("momentum", m)]);
        Ok(StepOutput { loss, metrics })
    }

    fn simclr(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        let (z, hidden) = embed_all(online, clips);
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
        for &(a, b) in &pairs {
            let l = nt_xent(z[a].clone(), z[b].clone(), self.config.temperature, coll);
            loss = accumulate(loss, l);
        }
        let loss = loss.expect("≥ 1 pair").mul_scalar(factor);
        let detached: Vec<Tensor<B, 2>> = z.iter().map(|x| x.clone().detach()).collect();
        let mut metrics = diagnostics(&detached, &detached, &hidden);
        metrics.insert("loss", scalar(loss.clone().detach()));
        Ok(StepOutput { loss, metrics })
    }

    fn swav(
        &mut self,
        online: &SslNetwork<B>,
        clips: &[Tensor<B, 5>],
        ctx: StepContext<'_>,
        coll: &dyn Collectives<B>,
    ) -> Result<StepOutput<B>, ObjectiveError> {
        let protos = online
            .prototypes
            .as_ref()
            .ok_or_else(|| ObjectiveError::Config("the SwAV network has no prototypes".into()))?;
        let frozen = ctx.epoch < self.config.freeze_prototypes_epochs;
        let (z, hidden) = embed_all(online, clips);
        let scores: Vec<Tensor<B, 2>> =
            z.iter().map(|x| protos.scores(x.clone(), frozen)).collect();
        let settings = SwavSettings {
            temperature: self.config.temperature,
            epsilon: self.config.sinkhorn_epsilon,
            iterations: self.config.sinkhorn_iterations,
            assignment_views: 2,
        };
        let loss = swapped_prediction(&scores, settings, coll);
        let detached: Vec<Tensor<B, 2>> = z.iter().map(|x| x.clone().detach()).collect();
        let mut metrics = diagnostics(&detached, &detached, &hidden);
        metrics.extend([
            ("loss", scalar(loss.clone().detach())),
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

/// The normalised embeddings of every clip and the projector's hidden activations of the first.
fn embed_all<B: AutodiffBackend>(
    online: &SslNetwork<B>,
    clips: &[Tensor<B, 5>],
) -> (Vec<Tensor<B, 2>>, Vec<Tensor<B, 2>>) {
    let mut hidden = Vec::new();
    let z = clips
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (z, h) = online.project_hidden(c.clone());
            if i == 0 {
                hidden = h;
            }
            l2_normalize(z)
        })
        .collect();
    (z, hidden)
}

/// The diagnostics every method logs (see [`crate::diagnostics`]): positive and cross-video
/// similarity of queries (or predictions) to targets, ‖mean target‖, the queries' embedding std
/// and the dead hidden units of the heads.
fn diagnostics<B: burn::tensor::backend::Backend>(
    queries: &[Tensor<B, 2>],
    targets: &[Tensor<B, 2>],
    hidden: &[Tensor<B, 2>],
) -> BTreeMap<&'static str, f64> {
    let (pos, cross) = crate::diagnostics::same_and_cross_video(queries, targets);
    let std = queries
        .iter()
        .map(|q| embedding_std(q.clone()))
        .sum::<f64>()
        / queries.len().max(1) as f64;
    BTreeMap::from([
        ("pos_sim", pos),
        ("cross_sim", cross),
        (
            "target_mean_norm",
            crate::diagnostics::mean_target_norm(targets),
        ),
        ("dead_units", crate::diagnostics::dead_unit_fraction(hidden)),
        ("emb_std", std),
    ])
}

/// Enqueues this step's keys of one clip from every rank (the global queue), with their videos.
fn enqueue_global<B: AutodiffBackend>(
    queue: &mut KeyQueue<B::InnerBackend>,
    keys: &Tensor<B, 2>,
    videos: &[i64],
    coll: &dyn Collectives<B>,
) -> Result<(), ObjectiveError> {
    let [n, d] = keys.dims();
    if coll.world_size() == 1 {
        return queue.enqueue(keys.clone().inner(), videos);
    }
    // One gather for keys and video ids: ids ride as an extra column (exact below 2^24 videos
    // in float32).
    let ids: Vec<f32> = if videos.len() == n {
        videos.iter().map(|&v| v as f32).collect()
    } else {
        vec![-1.0; n]
    };
    let ids = Tensor::<B, 2>::from_data(TensorData::new(ids, [n, 1]), &keys.device());
    let all = coll.all_gather(Tensor::cat(vec![keys.clone(), ids], 1));
    let rows = all.dims()[0];
    let all_ids = all
        .clone()
        .slice([0..rows, d..d + 1])
        .into_data()
        .convert::<f64>()
        .to_vec::<f64>()
        .map_err(|e| ObjectiveError::Shape(format!("queue video ids: {e:?}")))?;
    let all_ids: Vec<i64> = all_ids.iter().map(|v| v.round() as i64).collect();
    queue.enqueue(all.slice([0..rows, 0..d]).inner(), &all_ids)
}
