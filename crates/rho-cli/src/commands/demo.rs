//! `rho demo`: the whole idea on a laptop in minutes, with nothing to download. It generates a
//! labelled synthetic video dataset (`rho synth`), pre-trains one of the four methods on a tiny
//! Slow network with that method's demo recipe (configs/demo/METHOD.toml, embedded; their
//! comments give the measurements behind each setting), then runs the linear probe and kNN
//! (configs/eval/demo_linear_cpu.toml, embedded) on the learned backbone and on a randomly
//! initialised one of the same shape, and prints a table; `OUT/results.json`, `OUT/results.md`
//! and `OUT/demo.png` keep it, next to the pre-training plots in `OUT/pretrain/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use burn::tensor::backend::Backend;
use clap::{Args, ValueEnum};
use rho_train::eval::{EvalJob, EvalRecipe, WeightSource};
use rho_train::Recipe;

use super::eval::EvalProtocol;
use super::pretrain::{Parallel, PretrainJob};
use crate::backend::BackendKind;

const EVAL: &str = include_str!("../../../../configs/eval/demo_linear_cpu.toml");

/// The objective `rho demo` pre-trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoMethod {
    Byol,
    Moco,
    Simclr,
    Swav,
}

impl DemoMethod {
    /// The method's name in the paper.
    fn title(self) -> &'static str {
        match self {
            DemoMethod::Byol => "ρBYOL",
            DemoMethod::Moco => "ρMoCo",
            DemoMethod::Simclr => "ρSimCLR",
            DemoMethod::Swav => "ρSwAV",
        }
    }

    /// The method's demo recipe: its file name (for messages) and text (embedded). Adding a
    /// method to the demo is one line here and one file in configs/demo/.
    fn recipe(self) -> (&'static str, &'static str) {
        match self {
            DemoMethod::Byol => (
                "configs/demo/byol.toml",
                include_str!("../../../../configs/demo/byol.toml"),
            ),
            DemoMethod::Moco => (
                "configs/demo/moco.toml",
                include_str!("../../../../configs/demo/moco.toml"),
            ),
            DemoMethod::Simclr => (
                "configs/demo/simclr.toml",
                include_str!("../../../../configs/demo/simclr.toml"),
            ),
            DemoMethod::Swav => (
                "configs/demo/swav.toml",
                include_str!("../../../../configs/demo/swav.toml"),
            ),
        }
    }
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Output folder (default: a fresh `rho-demo-N` in the current folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Synthetic dataset: classes and videos per class.
    #[arg(long, default_value_t = 8)]
    pub classes: usize,
    #[arg(long, default_value_t = 24)]
    pub train_per_class: usize,
    #[arg(long, default_value_t = 8)]
    pub test_per_class: usize,
    /// Seed of the data, the pre-training and the random baseline.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// ρ: clips per video (1 = two crops of one moment). 3 by default: at this budget ρ = 2
    /// learns well for some seeds only (see scripts/ablate_rho.sh), ρ = 3 for every seed tried.
    #[arg(long, default_value_t = 3)]
    pub rho: usize,
    /// The objective, with its demo recipe (configs/demo/METHOD.toml).
    #[arg(long, value_enum, default_value_t = DemoMethod::Simclr)]
    pub method: DemoMethod,
    /// Pre-training steps (default: the recipe's epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Override a field of the pre-training recipe (repeatable), e.g. `--set epochs=20`.
    #[arg(long = "set")]
    pub overrides: Vec<String>,
    /// Override a field of the evaluation recipe (repeatable), e.g. `--eval-set epochs=10`.
    #[arg(long = "eval-set")]
    pub eval_overrides: Vec<String>,
}

/// Top-1 of the four evaluations, in percent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Pair {
    pub learned: f64,
    pub random: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoResults {
    pub linear: Pair,
    pub knn: Pair,
}

fn fresh_dir() -> PathBuf {
    (1..)
        .map(|i| PathBuf::from(format!("rho-demo-{i}")))
        .find(|p| !p.exists())
        .unwrap_or_else(|| PathBuf::from("rho-demo"))
}

pub fn run<B: Backend>(a: &DemoArgs, backend: BackendKind, device: B::Device) -> Result<()> {
    let t0 = std::time::Instant::now();
    let out = a.out.clone().unwrap_or_else(fresh_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    eprintln!("rho demo → {} (backend {backend})", out.display());
    let data = make_data(a, &out.join("data"), t0)?;
    let recipe = pretrain::<B>(a, &data, &out, backend, &device)?;
    let eval = eval_recipe(a, &data, &recipe.model.arch)?;
    eprintln!("[3/3] linear probe and kNN: learned versus random features");
    let results = evaluate::<B>(a, &eval, &recipe, &out, &device)?;
    report(a, &eval, &results, &out)?;
    let gain = results.linear.learned - results.linear.random;
    eprintln!(
        "learned features {} random ones by {gain:+.1} points (linear) and {:+.1} (kNN); {:.0} s in all. Files: {}/results.{{json,md}}, demo.png, pretrain/{{loss,lr,collapse}}.png",
        if gain > 0.0 { "beat" } else { "do not beat" },
        results.knn.learned - results.knn.random,
        t0.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// 1. The synthetic videos in `data` (reused when the folder holds the same configuration).
fn make_data(a: &DemoArgs, data: &Path, t0: std::time::Instant) -> Result<PathBuf> {
    let synth = rho_data::synth::SynthConfig {
        classes: a.classes,
        train_per_class: a.train_per_class,
        test_per_class: a.test_per_class,
        seed: a.seed,
        ..Default::default()
    };
    let reuse = std::fs::read_to_string(data.join("synth.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<rho_data::synth::SynthConfig>(&t).ok())
        .is_some_and(|c| c == synth)
        && data.join("test.txt").exists();
    if reuse {
        eprintln!("[1/3] synthetic videos: reusing {}", data.display());
    } else {
        let d = rho_data::synth::generate(&synth, data)?;
        eprintln!(
            "[1/3] synthetic videos: {} videos of {} classes ({}) in {:.1} s",
            d.videos,
            d.classes.len(),
            d.classes.join(", "),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(data.to_path_buf())
}

/// 2. Pre-training: the method's demo recipe on the generated data, into `OUT/pretrain`.
fn pretrain<B: Backend>(
    a: &DemoArgs,
    data: &Path,
    out: &Path,
    backend: BackendKind,
    device: &B::Device,
) -> Result<Recipe> {
    let (recipe_file, recipe_text) = a.method.recipe();
    let source = format!("{recipe_file} (embedded)");
    let mut recipe = Recipe::parse(recipe_text, &source, &a.overrides)?;
    recipe.data.index = data.join("train.txt");
    recipe.data.prefix = Some(data.to_path_buf());
    recipe.output = out.join("pretrain");
    recipe.seed = a.seed;
    recipe.data.rho = a.rho;
    recipe
        .validate()
        .map_err(|e| anyhow::anyhow!("{source} with --rho {}: {e}", a.rho))?;
    eprintln!("[2/3] {} pre-training", a.method.title());
    let mut job = PretrainJob::new(recipe.clone(), &source, backend);
    job.overrides = a.overrides.clone();
    job.opts.max_steps = a.max_steps;
    job.run::<B>(Parallel::single(device.clone()))?;
    Ok(recipe)
}

/// The embedded evaluation recipe on the generated train/test lists.
fn eval_recipe(a: &DemoArgs, data: &Path, arch: &str) -> Result<EvalRecipe> {
    let mut eval = EvalRecipe::parse(
        EVAL,
        "configs/eval/demo_linear_cpu.toml (embedded)",
        &a.eval_overrides,
    )?;
    for (split, list) in [(&mut eval.train, "train.txt"), (&mut eval.test, "test.txt")] {
        split.index = data.join(list);
        split.prefix = Some(data.to_path_buf());
    }
    eval.model = Some(rho_train::eval::EvalModel {
        arch: arch.to_string(),
    });
    eval.seed = a.seed;
    eval.validate()
        .map_err(|e| anyhow::anyhow!("the demo's evaluation recipe: {e}"))?;
    Ok(eval)
}

/// 3. Linear probe and kNN of the learned backbone and of a random one.
fn evaluate<B: Backend>(
    a: &DemoArgs,
    eval: &EvalRecipe,
    recipe: &Recipe,
    out: &Path,
    device: &B::Device,
) -> Result<DemoResults> {
    let learned = WeightSource::File(recipe.output.join("backbone.safetensors"));
    let random = WeightSource::Random { seed: a.seed + 1 };
    let mut top1 = std::collections::BTreeMap::new();
    for (name, weights) in [("learned", learned), ("random", random)] {
        let job = EvalJob {
            recipe: eval.clone(),
            weights,
            arch: None,
            cache: Some(out.join("feature_cache")),
        };
        for protocol in [EvalProtocol::Linear, EvalProtocol::Knn] {
            let r = super::eval::evaluate::<B>(&job, protocol, device)?;
            r.write(&out.join(format!("{protocol}_{name}")))?;
            eprintln!(
                "  {:6} {name:7} top-1 {:5.1}%  ({:.0} s)",
                protocol.to_string(),
                r.top1,
                r.seconds
            );
            top1.insert((protocol, name), r.top1);
        }
    }
    let get = |p, n| top1.get(&(p, n)).copied().unwrap_or(f64::NAN);
    Ok(DemoResults {
        linear: Pair {
            learned: get(EvalProtocol::Linear, "learned"),
            random: get(EvalProtocol::Linear, "random"),
        },
        knn: Pair {
            learned: get(EvalProtocol::Knn, "learned"),
            random: get(EvalProtocol::Knn, "random"),
        },
    })
}

/// results.json, results.md, demo.png, and the table on stdout.
fn report(a: &DemoArgs, eval: &EvalRecipe, results: &DemoResults, out: &Path) -> Result<()> {
    let chance = 100.0 / a.classes as f64;
    let table = format!(
        "| top-1 on {} held-out videos ({} classes, chance {chance:.1}%) | learned ({}, ρ = {}) | random init |\n|---|---|---|\n| linear probe (frozen BN, {}) | {:.1} | {:.1} |\n| kNN (k = {}, T = {}) | {:.1} | {:.1} |\n",
        a.classes * a.test_per_class,
        a.classes,
        a.method.title(),
        a.rho,
        eval.views_text(),
        results.linear.learned,
        results.linear.random,
        eval.knn.k,
        eval.knn.temperature,
        results.knn.learned,
        results.knn.random,
    );
    rho_model::weights::write_atomically(
        &out.join("results.json"),
        serde_json::to_string_pretty(&results)?.as_bytes(),
    )?;
    rho_model::weights::write_atomically(&out.join("results.md"), table.as_bytes())?;
    rho_train::plot::BarChart {
        title: format!("rho demo: top-1 % on held-out videos (chance {chance:.0}%)"),
        groups: vec![
            (
                "linear".into(),
                vec![results.linear.learned, results.linear.random],
            ),
            ("kNN".into(), vec![results.knn.learned, results.knn.random]),
        ],
        series: vec![
            ("learned".into(), [200, 60, 30]),
            ("random".into(), [120, 120, 120]),
        ],
        max: 100.0,
    }
    .save_png(&out.join("demo.png"))?;
    println!("{table}");
    Ok(())
}
