//! Downstream evaluation (docs/method.md §5): the linear probe in both BatchNorm modes with a
//! feature cache, cosine kNN, fine-tuning, and testing with 10 × 3 views; reports as JSON,
//! markdown and a confusion-matrix PNG.

pub mod common;
pub mod features;
pub mod finetune;
pub mod knn;
pub mod metrics;
pub mod probe;
pub mod recipe;
pub mod report;
pub mod source;

use std::path::PathBuf;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use rho_data::VideoIndex;
use rho_model::ResNet3d;

pub use features::{FeatureCache, FeatureSet};
pub use metrics::{Accuracy, Scores};
pub use recipe::{BnMode, EvalModel, EvalRecipe, Protocol};
pub use report::EvalReport;
pub use source::WeightSource;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Data(#[from] rho_data::DataError),
    #[error(transparent)]
    Model(#[from] rho_model::ModelError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
}

/// Progress callback: (phase, done, total).
pub type Progress<'a> = dyn FnMut(&str, usize, usize) + 'a;

/// What to evaluate and where to keep features.
pub struct EvalJob {
    pub recipe: EvalRecipe,
    pub weights: WeightSource,
    /// Overrides `model.arch` of the recipe.
    pub arch: Option<String>,
    /// A folder for cached features (frozen-BN probe and kNN).
    pub cache: Option<PathBuf>,
}

struct Loaded<B: Backend> {
    backbone: ResNet3d<B>,
    /// What identifies the weights in feature-cache keys (read once per job).
    weights_key: String,
    arch: String,
    train: VideoIndex,
    test: VideoIndex,
    classes: usize,
}

impl EvalJob {
    fn arch(&self) -> Option<String> {
        self.arch
            .clone()
            .or_else(|| self.recipe.model.as_ref().map(|m| m.arch.clone()))
    }

    fn load<B: Backend>(&self, device: &B::Device) -> Result<Loaded<B>, EvalError> {
        if let WeightSource::File(p) = &self.weights {
            source::exists(p)?;
        }
        let precision = self.recipe.precision;
        let backbone = source::load_backbone::<B>(&self.weights, self.arch().as_deref(), device)?
            .with_precision(precision);
        let arch = backbone.arch.clone();
        let train = self.recipe.train.load()?;
        let test = self.recipe.test.load()?;
        let classes = common::class_count(&train, &test)?;
        let weights_key = match (&self.cache, &self.weights) {
            (None, _) => String::new(),
            (Some(_), WeightSource::File(p)) => features::file_fingerprint(p)?,
            (Some(_), WeightSource::Random { seed }) => format!("random-{seed}"),
        };
        // Cached features are per precision.
        let weights_key = match precision {
            rho_model::Precision::F32 => weights_key,
            p => format!("{weights_key}-{p}"),
        };
        Ok(Loaded {
            backbone,
            weights_key,
            arch,
            train,
            test,
            classes,
        })
    }

    fn report(&self, protocol: &str, l: &LoadedInfo) -> EvalReport {
        let r = &self.recipe;
        EvalReport {
            protocol: protocol.into(),
            recipe: r.name.clone(),
            weights: self.weights.describe(),
            arch: l.arch.clone(),
            bn_mode: None,
            views: r.views_text(),
            train: r.train.index.display().to_string(),
            test: r.test.index.display().to_string(),
            train_videos: l.train_videos,
            test_videos: l.test_videos,
            classes: l.classes,
            top1: 0.0,
            top5: 0.0,
            mean_class: 0.0,
            paper_top1: r.paper.as_ref().map(|p| p.top1),
            paper_source: r.paper.as_ref().map(|p| p.source.clone()),
            train_backbone_passes: 0,
            feature_cache_hit: false,
            seconds: 0.0,
            loss_per_epoch: vec![],
            confusion: vec![],
        }
    }

    /// Features of one pass over a list, from the cache when it has them.
    fn features<B: Backend>(
        &self,
        weights_key: &str,
        backbone: &ResNet3d<B>,
        pass: Pass,
        device: &B::Device,
        progress: &mut Progress,
    ) -> Result<(FeatureSet, bool), EvalError> {
        let Pass {
            index,
            cfg,
            epoch,
            phase,
        } = pass;
        let cache = self.cache.as_ref().map(|d| FeatureCache { dir: d.clone() });
        let key = cache.as_ref().map(|c| {
            let idx = serde_json::to_string(
                &index
                    .entries
                    .iter()
                    .map(|e| (e.source.path().display().to_string(), e.label))
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default();
            let cfgj = serde_json::to_string(cfg).unwrap_or_default();
            c.path(&[weights_key, &backbone.arch, &idx, &cfgj, &epoch.to_string()])
        });
        if let (Some(c), Some(k)) = (&cache, &key) {
            if let Some(set) = c.load(k) {
                if set.n == index.len() {
                    progress(phase, set.n, set.n);
                    return Ok((set, true));
                }
            }
        }
        let set = features::extract(backbone, index, cfg, epoch, device, |d, t| {
            progress(phase, d, t)
        })?;
        if let (Some(c), Some(k)) = (&cache, &key) {
            c.store(k, &set)?;
        }
        Ok((set, false))
    }

    /// The linear probe in the recipe's BN mode.
    pub fn linear<B: AutodiffBackend>(
        &self,
        device: &B::Device,
        progress: &mut Progress,
    ) -> Result<EvalReport, EvalError> {
        let t0 = Instant::now();
        let r = &self.recipe;
        let l = self.load::<B>(device)?;
        let mut report = self.report("linear", &l.info());
        report.bn_mode = Some(format!("{:?}", r.bn).to_lowercase());
        let test_cfg = common::test_loader(r, common::test_batch(r));
        let (backbone, head, curve) = match r.bn {
            BnMode::Frozen => {
                let inner = l.backbone.valid();
                let mut cfg = common::train_loader(r);
                cfg.batch_size = r.batch.min(64);
                let mut sets = Vec::new();
                let mut hit = true;
                for v in 0..r.data.train_views {
                    let (s, h) = self.features(
                        &l.weights_key,
                        &inner,
                        Pass {
                            index: &l.train,
                            cfg: &cfg,
                            epoch: v as u64,
                            phase: "train features",
                        },
                        device,
                        progress,
                    )?;
                    hit &= h;
                    report.train_backbone_passes += (!h) as usize;
                    sets.push(s);
                }
                report.feature_cache_hit = hit;
                let train = FeatureSet::concat_views(&sets);
                let (head, curve) =
                    probe::train_on_features::<B>(r, &train, l.classes, device, progress)?;
                (inner, head, curve)
            }
            BnMode::Code => {
                let (bb, head, curve) = probe::train_with_backbone(
                    r, l.backbone, &l.train, l.classes, device, progress,
                )?;
                report.train_backbone_passes = curve.len();
                (bb.valid(), head, curve)
            }
        };
        let (test, _) = self.features(
            &l.weights_key,
            &backbone,
            Pass {
                index: &l.test,
                cfg: &test_cfg,
                epoch: 0,
                phase: "test views",
            },
            device,
            progress,
        )?;
        let scores = common::head_scores(&head, &test, l.classes, device);
        report.set_accuracy(&scores.accuracy());
        report.loss_per_epoch = curve;
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report)
    }

    /// kNN top-1 of an in-memory backbone (the pre-training monitor): no cache, no report.
    pub fn knn_of<B: Backend>(
        recipe: &EvalRecipe,
        backbone: &ResNet3d<B>,
        device: &B::Device,
    ) -> Result<Accuracy, EvalError> {
        let train = recipe.train.load()?;
        let test = recipe.test.load()?;
        let classes = common::class_count(&train, &test)?;
        let bank_cfg = common::bank_loader(recipe);
        let bank = features::extract(backbone, &train, &bank_cfg, 0, device, |_, _| {})?;
        let test_cfg = common::test_loader(recipe, common::test_batch(recipe));
        let queries = features::extract(backbone, &test, &test_cfg, 0, device, |_, _| {})?;
        Ok(knn::knn_scores::<B>(
            &bank,
            &queries,
            classes,
            recipe.knn.k,
            recipe.knn.temperature,
            device,
        )
        .accuracy())
    }

    /// Cosine kNN: training videos through their centre view, test videos through the test
    /// views (features of the frozen backbone, cached like the probe's).
    pub fn knn<B: Backend>(
        &self,
        device: &B::Device,
        progress: &mut Progress,
    ) -> Result<EvalReport, EvalError> {
        let t0 = Instant::now();
        let r = &self.recipe;
        let l = self.load::<B>(device)?;
        let mut report = self.report("knn", &l.info());
        let bank_cfg = common::bank_loader(r);
        let (train, hit) = self.features(
            &l.weights_key,
            &l.backbone,
            Pass {
                index: &l.train,
                cfg: &bank_cfg,
                epoch: 0,
                phase: "train features",
            },
            device,
            progress,
        )?;
        report.feature_cache_hit = hit;
        report.train_backbone_passes = (!hit) as usize;
        let test_cfg = common::test_loader(r, common::test_batch(r));
        let (test, _) = self.features(
            &l.weights_key,
            &l.backbone,
            Pass {
                index: &l.test,
                cfg: &test_cfg,
                epoch: 0,
                phase: "test views",
            },
            device,
            progress,
        )?;
        let scores =
            knn::knn_scores::<B>(&train, &test, l.classes, r.knn.k, r.knn.temperature, device);
        report.set_accuracy(&scores.accuracy());
        report.views = format!(
            "{} (kNN, k = {}, T = {})",
            report.views, r.knn.k, r.knn.temperature
        );
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report)
    }

    /// Fine-tuning of the whole network, then the test views.
    pub fn finetune<B: AutodiffBackend>(
        &self,
        device: &B::Device,
        progress: &mut Progress,
    ) -> Result<EvalReport, EvalError> {
        let t0 = Instant::now();
        let r = &self.recipe;
        let l = self.load::<B>(device)?;
        let mut report = self.report("finetune", &l.info());
        let (model, curve) =
            finetune::finetune(r, l.backbone, &l.train, l.classes, device, progress)?;
        report.train_backbone_passes = curve.len();
        let head = model
            .head
            .clone()
            .ok_or_else(|| EvalError::Config("fine-tuned model lost its head".into()))?;
        let inner = model.valid();
        // Test features without the cache: these weights exist only in memory.
        let test_cfg = common::test_loader(r, common::test_batch(r));
        let test = features::extract(&inner, &l.test, &test_cfg, 0, device, |d, t| {
            progress("test views", d, t)
        })?;
        let scores = common::head_scores(&head, &test, l.classes, device);
        report.set_accuracy(&scores.accuracy());
        report.loss_per_epoch = curve;
        report.seconds = t0.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// One pass of a backbone over a list: the views of `cfg`, the random draws of `epoch`.
struct Pass<'a> {
    index: &'a VideoIndex,
    cfg: &'a rho_data::LoaderConfig,
    epoch: u64,
    phase: &'a str,
}

struct LoadedInfo {
    arch: String,
    train_videos: usize,
    test_videos: usize,
    classes: usize,
}

impl<B: Backend> Loaded<B> {
    fn info(&self) -> LoadedInfo {
        LoadedInfo {
            arch: self.arch.clone(),
            train_videos: self.train.len(),
            test_videos: self.test.len(),
            classes: self.classes,
        }
    }
}
