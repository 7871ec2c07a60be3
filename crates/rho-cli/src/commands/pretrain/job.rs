//! `PretrainJob`: a recipe run with everything the CLI adds around the trainer: the header,
//! the run card, the reporter and kNN monitor as hooks, and the exported backbone.

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use rho_model::weights::{save_safetensors, Naming};
use rho_train::{NoHooks, Recipe, RunOptions};

use super::hooks::{CliHooks, KnnMonitor, ReportPlan};
use super::parallel::{train, Parallel};
use crate::backend::BackendKind;

pub struct PretrainJob {
    pub recipe: Recipe,
    /// Where the recipe came from (for the run card), and the `--set` overrides applied to it.
    pub source: String,
    pub overrides: Vec<String>,
    pub opts: RunOptions,
    /// Refresh the plots every N steps (0: at the end only).
    pub plot_every: usize,
    pub monitor: Option<KnnMonitor>,
    pub backend: BackendKind,
    pub collective_timeout_s: f64,
}

impl PretrainJob {
    /// A job with no checkpoints, plots every 50 steps, no monitor.
    pub fn new(recipe: Recipe, source: &str, backend: BackendKind) -> Self {
        Self {
            recipe,
            source: source.to_string(),
            overrides: Vec::new(),
            opts: RunOptions::default(),
            plot_every: 50,
            monitor: None,
            backend,
            collective_timeout_s: f64::INFINITY,
        }
    }

    /// Trains on `parallel` and writes the online backbone to `OUTPUT/backbone.safetensors`.
    /// Ranks other than 0 train silently: rank 0 logs, plots, checkpoints and saves.
    pub fn run<B: Backend>(self, parallel: Parallel<B::Device>) -> Result<()> {
        let recipe = &self.recipe;
        if !parallel.lead() {
            let opts = RunOptions {
                checkpoint_every: None,
                ..self.opts
            };
            train::<B>(recipe, opts, parallel, f64::INFINITY, &mut NoHooks)?;
            return Ok(());
        }
        let lock = rho_train::run_lock::RunLock::acquire(&recipe.output)?;
        if !lock.held {
            eprintln!(
                "  warning: {} cannot be locked on this filesystem; make sure no other run writes into it",
                recipe.output.display()
            );
        }
        if lock.removed_temp_files > 0 {
            eprintln!(
                "  removed {} temporary file(s) of an interrupted earlier run",
                lock.removed_temp_files
            );
        }
        let (changes, resumed_at) = match &self.opts.resume {
            Some(p) => {
                // The header is enough here; the trainer reads and verifies the whole file.
                let meta = rho_train::checkpoint::Checkpoint::read_meta(p)?;
                let allow = self.opts.allow_recipe_change;
                let changes = rho_train::engine::resume_changes(&meta.recipe, recipe, allow)?;
                (changes, Some(meta.step))
            }
            None => (Vec::new(), None),
        };
        self.print_header(parallel.world(), parallel.describe::<B>());
        let plan = ReportPlan {
            dir: recipe.output.clone(),
            resumed_at,
            plot_every: self.plot_every,
            run_card: self.run_card(&changes)?,
        };
        let mut hooks = CliHooks::<B>::new(plan, self.monitor, parallel.device().clone());
        let net = train::<B>(
            recipe,
            self.opts,
            parallel,
            self.collective_timeout_s,
            &mut hooks,
        )?;
        let metrics = hooks.finish()?;
        let out = recipe.output.join("backbone.safetensors");
        save_safetensors(&net.backbone, &out, Naming::Rho)?;
        eprintln!(
            "metrics: {}; online backbone: {}",
            metrics.display(),
            out.display()
        );
        Ok(())
    }

    fn print_header(&self, world: usize, replicas: Option<String>) {
        let (r, s) = (&self.recipe, self.recipe.schedule());
        eprintln!(
            "rho pretrain {}: {} on {}, ρ = {}, {}×{} at {}², global batch {} for {} epochs, backend {}",
            r.name, format!("{:?}", r.method.kind).to_lowercase(), r.model.arch, r.data.rho, r.data.frames, r.data.stride,
            r.data.crop, r.batch, r.epochs, self.backend
        );
        eprintln!(
            "  learning rate: {} at batch {} scaled linearly to {:.4} at batch {}; warm-up {} epochs from {:.5}",
            r.optim.base_lr, r.optim.reference_batch, s.base_lr, r.batch, s.warmup_epochs, s.warmup_start
        );
        for o in &self.overrides {
            eprintln!("  override: {o}");
        }
        if let Some(replicas) = replicas {
            eprintln!(
                "  data parallel: {replicas}, {} videos each, SyncBN group {}",
                r.batch / world,
                r.model.sync_bn.group_size(world).unwrap_or(1)
            );
        }
        if let Ok(est) = rho_train::memory::estimate_per_device(r, world) {
            eprintln!(
                "  memory estimate per step and device: {} ({} activations)",
                rho_train::memory::gib(est.total()),
                rho_train::memory::gib(est.activation_bytes)
            );
        }
        if let Some(p) = &self.opts.resume {
            eprintln!("  resuming from {}", p.display());
        }
    }

    /// The run card: the resolved recipe, next to the metrics. A resumed run appends its own
    /// card (with the recipe changes it was allowed) below the earlier ones, which stay as
    /// comments so that the file remains one valid recipe.
    fn run_card(&self, changes: &[String]) -> Result<String> {
        let (r, s) = (&self.recipe, self.recipe.schedule());
        let path = r.output.join("run_card.toml");
        let mut card = String::new();
        if let Some(p) = &self.opts.resume {
            let earlier = std::fs::read_to_string(&path).unwrap_or_default();
            let lines = earlier
                .lines()
                .map(|l| match l.starts_with('#') || l.is_empty() {
                    true => format!("{l}\n"),
                    false => format!("# {l}\n"),
                });
            card.extend(lines);
            card += &format!("\n# ---- resumed from {}\n", p.display());
            for c in changes {
                card += &format!("# recipe change: {c}\n");
            }
        }
        card += &format!(
            "# rho {} ({}), run card of {}\n# effective global batch {} videos × {} views; LR {} × {}/{} = {:.5}\n{}",
            env!("CARGO_PKG_VERSION"),
            self.backend,
            self.source,
            r.batch,
            r.data.rho.max(2),
            r.optim.base_lr,
            r.batch,
            r.optim.reference_batch,
            s.base_lr,
            toml::to_string(r).context("cannot write the recipe as TOML")?
        );
        Ok(card)
    }
}
