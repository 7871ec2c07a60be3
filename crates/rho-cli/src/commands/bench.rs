//! `rho bench model`: the time of full training steps (forward, backward, SGD) of a backbone.
//!
//! The PyTorch side of the comparison is `scripts/bench_model.py`; `scripts/bench_model.sh`
//! runs both with the same thread count and prints the ratio.

use std::time::Instant;

use anyhow::{Context, Result};
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use clap::{Args, Subcommand};
use rho_model::{ResNet3d, ResNet3dConfig};
use rho_train::optim::{GroupedOptimizer, SgdRule};
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
    /// Convolutions through the backend's own conv3d instead of rho's host GEMM kernels (the
    /// CPU backends' default), to compare the two.
    #[arg(long)]
    pub native_conv: bool,
    /// BatchNorm through composed tensor ops instead of rho's fused host kernels (the CPU
    /// backends' default), to compare the two.
    #[arg(long)]
    pub native_norm: bool,
    /// The dtype convolutions compute in (mixed precision): f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    pub precision: rho_model::Precision,
}

#[derive(Serialize)]
struct Report {
    engine: &'static str,
    backend: String,
    arch: String,
    input: [usize; 5],
    threads: usize,
    precision: String,
    /// The first step alone: on cuda/wgpu it compiles and autotunes every kernel it meets
    /// (cold, unless the kernel cache holds them), so it is reported apart from the steady state.
    first_step_ms: f64,
    /// The untimed warm-up steps, the first included.
    warmup_ms: Vec<f64>,
    /// Steady state: the timed steps after the warm-up.
    step_ms_median: f64,
    step_ms_min: f64,
    step_ms_max: f64,
    clips_per_s: f64,
    /// GPU backends: kernels compiled and shapes autotuned by the first step, and in all.
    kernels_first_step: Option<crate::kernels::KernelCounts>,
    kernels_total: Option<crate::kernels::KernelCounts>,
    forward_ms_median: Option<f64>,
    /// Cross-entropy of the last step (a smoke test checks it is finite).
    final_loss: f64,
    /// The convolution path: "host-gemm" or "native".
    conv: String,
    /// The BatchNorm path: "host" or "composed".
    norm: String,
    /// Peak resident memory of the process (getrusage), MiB.
    peak_rss_mb: Option<f64>,
}

/// The process's peak resident set size in MiB (Linux reports `ru_maxrss` in KiB).
fn peak_rss_mb() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    // SAFETY: initialised by the successful call above.
    ok.then(|| unsafe { usage.assume_init() }.ru_maxrss as f64 / 1024.0)
}

pub fn run<B: Backend>(
    cmd: &BenchCommand,
    backend: crate::backend::BackendKind,
    device: B::Device,
    at: impl Fn(usize) -> B::Device,
) -> Result<()> {
    let a = match cmd {
        BenchCommand::Model(a) => a,
        BenchCommand::Collective(c) => return super::bench_collective::run::<B>(c, backend, at),
    };
    let input = [a.batch, 3, a.frames, a.size, a.size];
    let Trained {
        model,
        x,
        step_ms,
        warmup_ms,
        kernels_first_step,
        final_loss,
    } = time_train_steps::<B>(a, input, &device)?;
    let forward_ms_median = if a.forward {
        Some(time_forward(a, &model, x))
    } else {
        None
    };
    let conv = match model.stem.unit.strategy {
        rho_model::ConvStrategy::HostGemm => "host-gemm",
        rho_model::ConvStrategy::Native => "native",
    };
    let norm = match model.stem.unit.bn.strategy {
        rho_model::NormStrategy::Host => "host",
        rho_model::NormStrategy::Composed => "composed",
    };
    let measured = Measured {
        conv: conv.to_string(),
        norm: norm.to_string(),
        step_ms,
        warmup_ms,
        kernels_first_step,
        final_loss,
        forward_ms_median,
    };
    print_report(a, &build_report(a, backend, input, measured))
}

/// The state the train-step phase leaves behind: the forward phase times the trained model on
/// the same clips, and the report needs the raw step times.
struct Trained<B: Backend> {
    model: ResNet3d<Autodiff<B>>,
    x: Tensor<Autodiff<B>, 5>,
    /// Times of the timed (post-warmup) steps, in ms.
    step_ms: Vec<f64>,
    /// Times of the warm-up steps, in ms.
    warmup_ms: Vec<f64>,
    kernels_first_step: Option<crate::kernels::KernelCounts>,
    final_loss: f64,
}

/// Everything the report is computed from, so building it needs no long parameter list.
struct Measured {
    conv: String,
    norm: String,
    step_ms: Vec<f64>,
    warmup_ms: Vec<f64>,
    kernels_first_step: Option<crate::kernels::KernelCounts>,
    final_loss: f64,
    forward_ms_median: Option<f64>,
}

/// The same update as `scripts/bench_model.py` (SGD, momentum 0.9, weight decay 1e-4 on every
/// parameter), through the optimiser that pre-training uses, so the comparison includes an
/// identical update step.
fn sgd<B: AutodiffBackend>(model: &ResNet3d<B>) -> GroupedOptimizer<ResNet3d<B>, B> {
    let rule = SgdRule {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 1e-4,
        lars_trust: None,
    };
    GroupedOptimizer::new(model, rule, 1e-4)
}

/// Warmup plus timed train steps on one fixed random batch; the model is built here, after
/// seeding, so the weights and the clips are the same on every run.
fn time_train_steps<B: Backend>(
    a: &BenchModelArgs,
    input: [usize; 5],
    device: &B::Device,
) -> Result<Trained<B>> {
    let cfg = ResNet3dConfig::preset(&a.arch)?
        .with_num_classes(Some(a.classes))
        .with_dropout(0.0);
    B::seed(device, 0);
    let mut model = cfg.try_init::<Autodiff<B>>(device)?;
    if a.native_conv {
        model = model.with_conv_strategy(rho_model::ConvStrategy::Native);
    }
    if a.native_norm {
        model = model.with_norm_strategy(rho_model::NormStrategy::Composed);
    }
    model = model.with_precision(a.precision);
    model.check_input(&input).context("benchmark input")?;
    let mut optim = sgd(&model);
    let x = Tensor::<Autodiff<B>, 5>::random(input, Distribution::Normal(0.0, 1.0), device);
    let labels: Vec<i64> = (0..a.batch).map(|i| (i * 7 % a.classes) as i64).collect();
    let y = Tensor::<Autodiff<B>, 1, Int>::from_data(TensorData::new(labels, [a.batch]), device);
    let ce = CrossEntropyLossConfig::new().init(device);

    let (mut step_ms, mut warmup_ms) = (Vec::new(), Vec::new());
    let mut kernels_first_step = None;
    let mut final_loss = f64::NAN;
    for i in 0..a.warmup + a.steps {
        let t0 = Instant::now();
        let logits = model.try_logits(x.clone())?;
        let loss = ce.forward(logits, y.clone());
        model = optim.step(0.01, model, loss.backward());
        final_loss = loss.into_scalar().to_string().parse().unwrap_or(f64::NAN);
        B::sync(device).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if i == 0 {
            kernels_first_step = crate::kernels::log().map(|l| l.counts());
        }
        if i >= a.warmup {
            step_ms.push(ms);
        } else {
            warmup_ms.push(ms);
        }
        if !a.json {
            eprint!("\rstep {}/{} ({:.0} ms)", i + 1, a.warmup + a.steps, ms);
        }
    }
    if !a.json {
        eprintln!();
    }
    Ok(Trained {
        model,
        x,
        step_ms,
        warmup_ms,
        kernels_first_step,
        final_loss,
    })
}

/// Median time of inference-only forward passes (no autodiff graph), with the same warmup and
/// step counts as the train steps; reading the output back forces the work to finish.
fn time_forward<B: Backend>(
    a: &BenchModelArgs,
    model: &ResNet3d<Autodiff<B>>,
    x: Tensor<Autodiff<B>, 5>,
) -> f64 {
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
    median(&mut ft)
}

/// Reported so the two sides of the comparison can be seen to use the same thread count:
/// `RAYON_NUM_THREADS` when set (as `scripts/bench_model.sh` does), else every core.
fn thread_count() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

fn build_report(
    a: &BenchModelArgs,
    backend: crate::backend::BackendKind,
    input: [usize; 5],
    mut m: Measured,
) -> Report {
    let first_step_ms = m
        .warmup_ms
        .first()
        .or(m.step_ms.first())
        .copied()
        .unwrap_or(f64::NAN);
    let med = median(&mut m.step_ms);
    Report {
        engine: "rho",
        backend: backend.to_string(),
        arch: a.arch.clone(),
        input,
        threads: thread_count(),
        precision: a.precision.to_string(),
        first_step_ms,
        warmup_ms: m.warmup_ms,
        kernels_first_step: m.kernels_first_step,
        kernels_total: crate::kernels::log().map(|l| l.counts()),
        step_ms_median: med,
        step_ms_min: m.step_ms.iter().cloned().fold(f64::INFINITY, f64::min),
        step_ms_max: m.step_ms.iter().cloned().fold(0.0, f64::max),
        clips_per_s: a.batch as f64 / (med / 1e3),
        forward_ms_median: m.forward_ms_median,
        final_loss: m.final_loss,
        conv: m.conv,
        norm: m.norm,
        peak_rss_mb: peak_rss_mb(),
    }
}

/// One JSON object for `scripts/bench_model.sh`, or one human-readable line.
fn print_report(a: &BenchModelArgs, report: &Report) -> Result<()> {
    if a.json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        let kernels = match (report.kernels_first_step, report.kernels_total) {
            (Some(f), Some(t)) => format!(
                ", kernels compiled/autotuned: {}/{} in the first step, {}/{} in all",
                f.compiled, f.autotuned, t.compiled, t.autotuned
            ),
            _ => String::new(),
        };
        println!(
            "rho {} ({} conv, {} BatchNorm, {}) {} {:?}: first step {:.1} ms; steady-state train step median {:.1} ms (min {:.1}, max {:.1}) over {} steps, {:.2} clips/s{}, peak RSS {}{kernels}",
            report.backend,
            report.conv,
            report.norm,
            report.precision,
            report.arch,
            report.input,
            report.first_step_ms,
            report.step_ms_median,
            report.step_ms_min,
            report.step_ms_max,
            a.steps,
            report.clips_per_s,
            report
                .forward_ms_median
                .map(|f| format!(", forward {f:.1} ms"))
                .unwrap_or_default(),
            report
                .peak_rss_mb
                .map_or("unknown".to_string(), |m| format!("{m:.0} MiB"))
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
