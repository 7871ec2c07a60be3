//! `rho eval linear|knn|finetune --config C --weights W`: the downstream protocols of
//! docs/method.md §5 on a rho checkpoint, a safetensors/PyTorch file, or `--random` weights;
//! results go to `OUT/results.{json,md}` and `OUT/confusion.png`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rho_train::eval::{BnMode, EvalJob, EvalRecipe, EvalReport, WeightSource};

use crate::backend::BackendKind;

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Linear probe on a frozen backbone (docs/method.md §5.1).
    Linear(EvalArgs),
    /// Cosine kNN on normalised features (k = 200, weighted votes).
    Knn(EvalArgs),
    /// Fine-tune the whole network with a new head (docs/method.md §5.2).
    Finetune(EvalArgs),
}

/// The protocol a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum EvalProtocol {
    Linear,
    Knn,
    Finetune,
}

impl std::fmt::Display for EvalProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EvalProtocol::Linear => "linear",
            EvalProtocol::Knn => "knn",
            EvalProtocol::Finetune => "finetune",
        })
    }
}

/// `--bn`: how BatchNorm behaves while a linear probe trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BnArg {
    /// Re-estimated statistics on the probe's data (the released code).
    Code,
    /// The pre-trained running statistics; features computed once and cached.
    Frozen,
}

impl From<BnArg> for BnMode {
    fn from(b: BnArg) -> Self {
        match b {
            BnArg::Code => BnMode::Code,
            BnArg::Frozen => BnMode::Frozen,
        }
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The evaluation recipe (configs/linear_*.toml, configs/finetune_*.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// A rho checkpoint (.rho: its online backbone), or a .safetensors/.pth/.pyth file.
    #[arg(long, conflicts_with = "random")]
    pub weights: Option<PathBuf>,
    /// Evaluate a randomly initialised network instead (the baseline), with this seed.
    #[arg(long)]
    pub random: Option<u64>,
    /// The network shape (else the recipe's model.arch, or the checkpoint's).
    #[arg(long)]
    pub arch: Option<String>,
    /// Linear probe: BatchNorm mode (else the recipe's `bn`).
    #[arg(long, value_enum)]
    pub bn: Option<BnArg>,
    /// Override a recipe field, e.g. `--set epochs=10` (repeatable).
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Results folder (default: the recipe's output).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Feature cache folder (default: OUT/feature_cache; `none` disables it).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

pub fn run<B: Backend>(c: &EvalCommand, backend: BackendKind, device: B::Device) -> Result<()> {
    let (a, protocol) = match c {
        EvalCommand::Linear(a) => (a, EvalProtocol::Linear),
        EvalCommand::Knn(a) => (a, EvalProtocol::Knn),
        EvalCommand::Finetune(a) => (a, EvalProtocol::Finetune),
    };
    let mut recipe = EvalRecipe::load(&a.config, &a.overrides)?;
    if let Some(bn) = a.bn {
        recipe.bn = bn.into();
    }
    let weights = match (&a.weights, a.random) {
        (Some(p), None) => WeightSource::File(p.clone()),
        (None, Some(seed)) => WeightSource::Random { seed },
        _ => bail!("give --weights FILE or --random SEED"),
    };
    let out = a.out.clone().unwrap_or_else(|| recipe.output.clone());
    let cache = match &a.cache {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p.clone()),
        None => Some(out.join("feature_cache")),
    };
    eprintln!(
        "rho eval {protocol} ({}): {} on {}; test {}{}; backend {backend}",
        recipe.name,
        weights.describe(),
        recipe.train.index.display(),
        recipe.views_text(),
        if protocol == EvalProtocol::Linear {
            format!(
                ", BN {}",
                if recipe.bn == BnMode::Code {
                    "code (re-estimated)"
                } else {
                    "frozen"
                }
            )
        } else {
            String::new()
        }
    );
    let job = EvalJob {
        recipe,
        weights,
        arch: a.arch.clone(),
        cache,
    };
    let report = evaluate::<B>(&job, protocol, &device)?;
    report.write(&out)?;
    print!("{}", report.markdown());
    eprintln!(
        "{:.1} s; results in {}/results.{{json,md}} and confusion.png",
        report.seconds,
        out.display()
    );
    Ok(())
}

/// Runs one protocol with a progress bar.
pub fn evaluate<B: Backend>(
    job: &EvalJob,
    protocol: EvalProtocol,
    device: &B::Device,
) -> Result<EvalReport> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("  {msg:16} {bar:30} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = |phase: &str, done: usize, total: usize| {
        bar.set_message(phase.to_string());
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let report = match protocol {
        EvalProtocol::Linear => job.linear::<Autodiff<B>>(device, &mut progress)?,
        EvalProtocol::Knn => job.knn::<B>(device, &mut progress)?,
        EvalProtocol::Finetune => job.finetune::<Autodiff<B>>(device, &mut progress)?,
    };
    bar.finish_and_clear();
    Ok(report)
}
