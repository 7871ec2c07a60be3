//! `rho bench collective`: the time and bandwidth of one all-reduce of a gradient-sized buffer
//! on the data-parallel engines: burn-collective between the devices of this process, or MPI
//! between the processes of `mpirun -np N rho bench collective`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use burn::tensor::{backend::Backend, Distribution, Tensor};
use clap::Args;
use rho_train::distributed::{LocalTransport, Transport, Watch};
use serde::Serialize;

#[derive(Args, Debug)]
pub struct BenchCollectiveArgs {
    /// Floats per all-reduce (default: slow_r50's 32M parameters, one step's gradients).
    #[arg(long, default_value_t = 32_000_000)]
    pub floats: usize,
    /// Timed all-reduces (after one untimed).
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// In-process devices (ignored under mpirun, where each process is one).
    #[arg(long, default_value_t = 2)]
    pub devices: usize,
    #[arg(long)]
    pub json: bool,
    /// Seconds a rank may wait in one all-reduce before the job is stopped (MPI).
    #[arg(long, default_value_t = 600.0)]
    pub timeout_s: f64,
}

#[derive(Serialize)]
struct Report {
    engine: String,
    backend: String,
    ranks: usize,
    floats: usize,
    ms_median: f64,
    /// Buffer bytes / time (the "algorithm bandwidth" of NCCL's tests).
    gb_per_s: f64,
}

/// Median milliseconds of `iters` all-reduces of `floats` on `t`.
fn time_all_reduce<B: Backend>(
    t: &dyn Transport<B>,
    device: &B::Device,
    floats: usize,
    iters: usize,
) -> Result<f64> {
    let x = Tensor::<B, 1>::random([floats], Distribution::Uniform(-1.0, 1.0), device);
    let mut ms = Vec::new();
    for i in 0..iters + 1 {
        let t0 = Instant::now();
        let y = t.all_reduce_sum(x.clone(), "benchmark")?;
        B::sync(device).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        drop(y);
        if i > 0 {
            ms.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(ms[ms.len() / 2])
}

pub fn run<B: Backend>(
    a: &BenchCollectiveArgs,
    backend: crate::backend::BackendKind,
    at: impl Fn(usize) -> B::Device,
) -> Result<()> {
    let report = |engine: String, ranks: usize, ms: f64| Report {
        engine,
        backend: backend.to_string(),
        ranks,
        floats: a.floats,
        ms_median: ms,
        gb_per_s: 4.0 * a.floats as f64 / (ms / 1e3) / 1e9,
    };
    #[cfg(feature = "mpi")]
    if let Some(env) = rho_train::distributed::LaunchEnv::detect().filter(|e| e.size > 1) {
        let t = rho_train::distributed::MpiTransport::init(a.timeout_s)?;
        let device = at(env.local_rank);
        let ms = time_all_reduce::<B>(&t, &device, a.floats, a.iters)?;
        if env.rank == 0 {
            print(&report(Transport::<B>::describe(&t), env.size, ms), a.json)?;
        }
        return Ok(());
    }
    let w = a.devices.max(2);
    burn::collective::reset_collective::<B>();
    let watch = Watch::new(w);
    let handles: Vec<_> = (0..w)
        .map(|rank| {
            let (watch, device) = (watch.clone(), at(rank));
            let (floats, iters) = (a.floats, a.iters);
            std::thread::spawn(move || -> Result<f64> {
                let t = Arc::new(LocalTransport::<B>::register(rank, w, &device, watch)?);
                let ms = time_all_reduce::<B>(t.as_ref(), &device, floats, iters)?;
                t.finish();
                Ok(ms)
            })
        })
        .collect();
    let mut ms = Vec::new();
    for h in handles {
        ms.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("a benchmark rank panicked"))??,
        );
    }
    let slowest = ms.iter().cloned().fold(0.0, f64::max);
    print(
        &report(
            format!("burn-collective (in-process), {w} devices"),
            w,
            slowest,
        ),
        a.json,
    )
}

fn print(r: &Report, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string(r)?);
    } else {
        println!(
            "{} on {}: all-reduce of {} floats ({:.1} MiB) in {:.3} ms median, {:.2} GB/s",
            r.engine,
            r.backend,
            r.floats,
            4.0 * r.floats as f64 / (1u64 << 20) as f64,
            r.ms_median,
            r.gb_per_s
        );
    }
    Ok(())
}
