//! `rho bench model`: the time of full training steps (forward, backward, SGD) of a backbone.
//!
//! The PyTorch side of the comparison is `scripts/bench_model.py`; `scripts/bench_model.sh`
//! runs both with the same thread count and prints the ratio.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::{backend::Backend, Distribution, Int, Tensor, TensorData};
use clap::{Args, Subcommand};
use rho_model::ResNet3dConfig;
use serde::Serialize;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Train-step throughput of a backbone on random clips.
    Model(BenchModelArgs),
    /// All-reduce time of the data-parallel engines (in-process, or under mpirun).
    Collective(super::bench_collective::BenchCollectiveArgs),
}

#[derive(Args, Debug)]
pub struct BenchModelArgs {
    #[arg(long, default_value = "r3d_18")]
    pub arch: String,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 8)]
    pub frames: usize,
    /// Height and width.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[arg(long, default_value_t = 400)]
    pub classes: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Also time inference-only forward passes.
    #[arg(long)]
    pub forward: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    engine: &'static str,
    backend: String,
    arch: String,
    input: [usize; 5],
    threads: usize,
    step_ms_median: f64,
    step_ms_min: f64,
    step_ms_max: f64,
    clips_per_s: f64,
    forward_ms_median: Option<f64>,
    /// Cross-entropy of the last step (a smoke test checks it is finite).
    final_loss: f64,
}

pub fn run<B: Backend>(
    cmd: &BenchCommand,
    backend: &str,
    device: B::Device,
    at: impl Fn(usize) -> B::Device,
) -> Result<()> {
    let a = match cmd {
        BenchCommand::Model(a) => a,
        BenchCommand::Collective(c) => return super::bench_collective::run::<B>(c, backend, at),
    };
    let input = [a.batch, 3, a.frames, a.size, a.size];
    let cfg = ResNet3dConfig::preset(&a.arch)?
        .with_num_classes(Some(a.classes))
        .with_dropout(0.0);
    type AB<B> = Autodiff<B>;
    B::seed(&device, 0);
    let mut model = cfg.try_init::<AB<B>>(&device)?;
    model.check_input(&input).context("benchmark input")?;
    let mut optim = SgdConfig::new()
        .with_momentum(Some(
            MomentumConfig::new()
                .with_momentum(0.9)
                .with_dampening(0.0)
                .with_nesterov(false),
        ))
        .with_weight_decay(Some(WeightDecayConfig::new(1e-4)))
        .init::<AB<B>, rho_model::ResNet3d<AB<B>>>();
    let x = Tensor::<AB<B>, 5>::random(input, Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..a.batch).map(|i| (i * 7 % a.classes) as i64).collect();
    let y = Tensor::<AB<B>, 1, Int>::from_data(TensorData::new(labels, [a.batch]), &device);
    let ce = CrossEntropyLossConfig::new().init(&device);

    let mut times = Vec::new();
    let mut final_loss = f64::NAN;
    for i in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        let logits = model.try_logits(x.clone())?;
        let loss = ce.forward(logits, y.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.01, model, grads);
        final_loss = loss.into_scalar().to_string().parse().unwrap_or(f64::NAN);
        B::sync(&device).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        if i >= a.warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        if !a.json {
            eprint!("\rstep {}/{}", i + 1, a.warmup + a.steps);
        }
    }
    if !a.json {
        eprintln!();
    }
    let forward_ms_median = if a.forward {
        let inner = model.valid();
        let xi = x.inner();
        let mut ft = Vec::new();
        for i in 0..a.warmup + a.steps {
            let t0 = Instant::now();
            let f = inner.forward(xi.clone());
            let _ = f.into_data();
            if i >= a.warmup {
                ft.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        Some(median(&mut ft))
    } else {
        None
    };
    let med = median(&mut times);
    let report = Report {
        engine: "rho",
        backend: backend.to_string(),
        arch: a.arch.clone(),
        input,
        threads: std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            }),
        step_ms_median: med,
        step_ms_min: times.iter().cloned().fold(f64::INFINITY, f64::min),
        step_ms_max: times.iter().cloned().fold(0.0, f64::max),
        clips_per_s: a.batch as f64 / (med / 1e3),
        forward_ms_median,
        final_loss,
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "rho {} {} {:?}: train step median {:.1} ms (min {:.1}, max {:.1}) over {} steps, {:.2} clips/s{}",
            report.backend,
            report.arch,
            input,
            med,
            report.step_ms_min,
            report.step_ms_max,
            a.steps,
            report.clips_per_s,
            forward_ms_median.map(|f| format!(", forward {f:.1} ms")).unwrap_or_default()
        );
    }
    Ok(())
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}
