//! `rho`: unsupervised spatiotemporal representation learning (ρMoCo, ρSimCLR, ρBYOL, ρSwAV).

mod allocator;
mod arch;
mod backend;
mod commands;
mod index_args;
mod kernels;
mod npy;

use anyhow::Result;
use clap::{Parser, Subcommand};

use backend::BackendKind;
use commands::*;

#[derive(Parser, Debug)]
#[command(
    name = "rho",
    version,
    about = "Unsupervised spatiotemporal representation learning on Burn"
)]
struct Cli {
    /// Backend to run on (default: the first compiled in of cuda, wgpu, flex, ndarray).
    #[arg(long, global = true, value_enum)]
    backend: Option<BackendKind>,
    /// GPU index for cuda/wgpu.
    #[arg(long, global = true, default_value_t = 0)]
    device: usize,
    #[command(flatten)]
    kernels: kernels::KernelArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The demo: synthetic videos, ρSimCLR pre-training, linear probe and kNN versus random init.
    Demo(demo::DemoArgs),
    /// Generate a labelled synthetic video dataset (frame folders and lists).
    Synth(synth::SynthArgs),
    /// Pooled features (and logits) of clips in a .npy file.
    Embed(embed::EmbedArgs),
    /// Convert weights between namings (pytorchvideo, pyslowfast, torchvision, rho).
    Convert(convert::ConvertArgs),
    /// Write a freshly initialised backbone as .safetensors.
    Init(init::InitArgs),
    /// Write a random normalised clip as .npy.
    MakeClip(make_clip::MakeClipArgs),
    /// List the backbone presets, methods and index formats.
    Models,
    /// Self-supervised pre-training from a recipe (configs/).
    Pretrain(pretrain::PretrainArgs),
    /// Downstream evaluation: linear probe, kNN, fine-tuning (configs/linear_*, finetune_*).
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Dataset tools.
    #[command(subcommand)]
    Data(DataCommand),
    /// Multi-node launch scripts (Slurm).
    #[command(subcommand)]
    Launch(launch::LaunchCommand),
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Check every video of an index or folder: decodable, frame counts, fps, VFR, length, GOP.
    Check(data_check::DataCheckArgs),
    /// Decode throughput of a clip recipe, single-threaded (compare: scripts/bench_data.py).
    Bench(data_bench::DataBenchArgs),
}

fn main() {
    allocator::keep_freed_memory();
    let result = run();
    if let Err(e) = &result {
        eprintln!("error: {e:#}");
    }
    // Under mpirun: finalise MPI, or after an error abort the job so no rank waits forever.
    #[cfg(feature = "mpi")]
    rho_train::distributed::finish_mpi(result.is_ok());
    if result.is_err() {
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::MakeClip(a) => return make_clip::run(a),
        Command::Synth(a) => return synth::run(a),
        Command::Data(DataCommand::Check(a)) => return data_check::run(a),
        Command::Data(DataCommand::Bench(a)) => return data_bench::run(a),
        Command::Launch(c) => return launch::run(c, cli.backend),
        _ => {}
    }
    let kind = BackendKind::resolve(cli.backend)?;
    if !kind.is_cpu() {
        if let Some(log) = kernels::configure(&cli.kernels)? {
            eprintln!(
                "kernel cache: {} (autotune results and compiled kernels, reused by later runs); \
                 the first steps compile and autotune what it lacks, minutes for a large network",
                log.cache_dir.display()
            );
        }
    }
    with_backend!(kind, cli.device, |B, dev, at| match &cli.command {
        Command::Embed(a) => embed::run::<B>(a, dev),
        Command::Convert(a) => convert::run::<B>(a, dev),
        Command::Init(a) => init::run::<B>(a, dev),
        Command::Models => models::run::<B>(dev),
        Command::Bench(c) => bench::run::<B>(c, kind, dev, at),
        Command::Pretrain(a) => pretrain::run::<B>(a, kind, dev, at),
        Command::Eval(c) => eval::run::<B>(c, kind, dev),
        Command::Demo(a) => demo::run::<B>(a, kind, dev),
        Command::MakeClip(_) | Command::Synth(_) | Command::Data(_) | Command::Launch(_) => {
            unreachable!("handled above")
        }
    })
}
