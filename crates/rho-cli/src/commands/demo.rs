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
use rho_objectives::MethodKind;
use rho_train::eval::{EvalJob, EvalRecipe, EvalReport, WeightSource};
use rho_train::{Recipe, RunOptions};

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

pub fn run<B: Backend>(a: &DemoArgs, backend: &str, device: B::Device) -> Result<()> {
    let t0 = std::time::Instant::now();
    let out = a.out.clone().unwrap_or_else(fresh_dir);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    eprintln!("rho demo → {} (backend {backend})", out.display());

    // 1. Data.
    let data = out.join("data");
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
        let d = rho_data::synth::generate(&synth, &data)?;
        eprintln!(
            "[1/3] synthetic videos: {} videos of {} classes ({}) in {:.1} s",
            d.videos,
            d.classes.len(),
            d.classes.join(", "),
            t0.elapsed().as_secs_f64()
        );
    }

    // 2. Pre-training.
    let data_s = toml_path(&data);
    let mut overrides = vec![
        format!("data.index={}", toml_path(&data.join("train.txt"))),
        format!("data.prefix={data_s}"),
        format!("output={}", toml_path(&out.join("pretrain"))),
        format!("seed={}", a.seed),
        format!("data.rho={}", a.rho),
    ];
    overrides.extend(a.overrides.iter().cloned());
    let (recipe_file, recipe_text) = a.method.recipe();
    let source = format!("{recipe_file} (embedded)");
    let recipe = Recipe::parse(recipe_text, &source, &overrides)?;
    let method = match recipe.method.kind {
        MethodKind::Moco => "ρMoCo",
        MethodKind::Byol => "ρBYOL",
        MethodKind::Simclr => "ρSimCLR",
        MethodKind::Swav => "ρSwAV",
    };
    eprintln!("[2/3] {method} pre-training");
    super::pretrain::execute::<B>(
        &recipe,
        &source,
        &overrides,
        RunOptions {
            max_steps: a.max_steps,
            checkpoint_every: Some(0),
            keep: 1,
            resume: None,
            memory_limit: None,
        },
        50,
        None,
        backend,
        super::pretrain::Parallel::Devices(vec![device.clone()]),
        f64::INFINITY,
    )?;

    // 3. Evaluation: learned versus random, linear probe and kNN.
    let mut eval_overrides = vec![
        format!("train.index={}", toml_path(&data.join("train.txt"))),
        format!("train.prefix={data_s}"),
        format!("test.index={}", toml_path(&data.join("test.txt"))),
        format!("test.prefix={data_s}"),
        format!("model.arch=\"{}\"", recipe.model.arch),
        format!("seed={}", a.seed),
    ];
    eval_overrides.extend(a.eval_overrides.iter().cloned());
    let eval = EvalRecipe::parse(
        EVAL,
        "configs/eval/demo_linear_cpu.toml (embedded)",
        &eval_overrides,
    )?;
    eprintln!("[3/3] linear probe and kNN: learned versus random features");
    let learned = WeightSource::File(recipe.output.join("backbone.safetensors"));
    let random = WeightSource::Random { seed: a.seed + 1 };
    let mut reports: Vec<(String, EvalReport)> = Vec::new();
    for (name, weights) in [("learned", learned), ("random", random)] {
        let job = EvalJob {
            recipe: eval.clone(),
            weights,
            arch: None,
            cache: Some(out.join("feature_cache")),
        };
        for protocol in ["linear", "knn"] {
            let r = super::eval::evaluate::<B>(&job, protocol, &device)?;
            r.write(&out.join(format!("{protocol}_{name}")))?;
            eprintln!(
                "  {protocol:6} {name:7} top-1 {:5.1}%  ({:.0} s)",
                r.top1, r.seconds
            );
            reports.push((format!("{protocol}_{name}"), r));
        }
    }
    let top1 = |k: &str| {
        reports
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, r)| r.top1)
            .unwrap_or(f64::NAN)
    };
    let results = DemoResults {
        linear: Pair {
            learned: top1("linear_learned"),
            random: top1("linear_random"),
        },
        knn: Pair {
            learned: top1("knn_learned"),
            random: top1("knn_random"),
        },
    };
    let chance = 100.0 / a.classes as f64;
    let table = format!(
        "| top-1 on {} held-out videos ({} classes, chance {chance:.1}%) | learned ({method}, ρ = {}) | random init |\n|---|---|---|\n| linear probe (frozen BN, {}) | {:.1} | {:.1} |\n| kNN (k = {}, T = {}) | {:.1} | {:.1} |\n",
        a.classes * a.test_per_class,
        a.classes,
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

/// A path as a TOML string value.
fn toml_path(p: &Path) -> String {
    toml::Value::String(p.display().to_string()).to_string()
}
