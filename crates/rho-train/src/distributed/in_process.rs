//! Data parallelism over the devices of one process: one thread per device, each a rank of
//! [`pretrain_rank`](crate::engine::pretrain_rank) over a [`LocalTransport`].
//!
//! The caller's thread only supervises: it forwards rank 0's step logs and epoch ends to the
//! callbacks, returns the first error of any rank (named), and reports a rank stuck in a
//! collective past the timeout instead of hanging (stuck threads cannot be cancelled; they
//! end with the process).

use std::sync::mpsc::{channel, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burn::tensor::backend::AutodiffBackend;
use rho_objectives::SslNetwork;

use super::local::{LocalTransport, Watch};
use crate::engine::{pretrain_rank, RankContext, RunOptions, StepLog, TrainError};
use crate::recipe::Recipe;

/// burn-collective keeps one group per backend type per process: one in-process run at a time.
static RUN: Mutex<()> = Mutex::new(());

enum Report<B: AutodiffBackend> {
    Step(StepLog),
    Epoch(u64, SslNetwork<B>),
    Done(usize, Result<Option<SslNetwork<B>>, TrainError>),
}

/// Pre-trains `recipe` data-parallel on `devices` (the same device may appear several times: on
/// a CPU that is how the equivalence is tested). Returns rank 0's network.
pub fn pretrain_data_parallel<B: AutodiffBackend>(
    recipe: &Recipe,
    devices: &[B::Device],
    opts: RunOptions,
    collective_timeout_s: f64,
    mut on_step: impl FnMut(&StepLog),
    mut on_epoch: impl FnMut(u64, &SslNetwork<B>) -> Result<(), TrainError>,
) -> Result<SslNetwork<B>, TrainError> {
    let world = devices.len();
    if world == 0 {
        return Err(TrainError::Stopped("no devices given".into()));
    }
    if world == 1 {
        return pretrain_rank(recipe, &devices[0], opts, None, on_step, on_epoch);
    }
    let _one_run = RUN.lock().unwrap_or_else(|e| e.into_inner());
    burn::collective::reset_collective::<B::InnerBackend>();
    let watch = Watch::new(world);
    let (tx, rx) = channel::<Report<B>>();
    for (rank, device) in devices.iter().enumerate() {
        let (tx, watch, device) = (tx.clone(), watch.clone(), device.clone());
        let (recipe, opts) = (recipe.clone(), opts.clone());
        std::thread::Builder::new()
            .name(format!("rho-rank-{rank}"))
            .spawn(move || {
                let work = || -> Result<Option<SslNetwork<B>>, TrainError> {
                    let transport =
                        LocalTransport::<B::InnerBackend>::register(rank, world, &device, watch)?;
                    let transport = Arc::new(transport);
                    let ctx = RankContext {
                        transport: transport.clone(),
                        local_ranks: world,
                    };
                    let step_tx = tx.clone();
                    let epoch_tx = tx.clone();
                    let net = pretrain_rank(
                        &recipe,
                        &device,
                        opts,
                        Some(&ctx),
                        |log| {
                            let _ = step_tx.send(Report::Step(log.clone()));
                        },
                        |epoch, net| {
                            let _ = epoch_tx.send(Report::Epoch(epoch, settled(net)));
                            Ok(())
                        },
                    )?;
                    transport.finish();
                    Ok((rank == 0).then(|| settled(&net)))
                };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                    .unwrap_or_else(|p| Err(TrainError::Stopped(panic_message(p))));
                let _ = tx.send(Report::Done(rank, result));
            })
            .map_err(|e| {
                TrainError::Stopped(format!("cannot start the thread of rank {rank}: {e}"))
            })?;
    }
    drop(tx);
    let (mut done, mut net) = (0, None);
    while done < world {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Report::Step(log)) => on_step(&log),
            Ok(Report::Epoch(e, n)) => on_epoch(e, &n)?,
            Ok(Report::Done(rank, result)) => match result {
                Ok(n) => {
                    done += 1;
                    if n.is_some() {
                        net = n;
                    }
                }
                Err(e) => {
                    return Err(TrainError::Rank {
                        rank,
                        error: Box::new(e),
                    })
                }
            },
            Err(RecvTimeoutError::Timeout) => {
                if let Some(e) = watch.stuck(collective_timeout_s) {
                    return Err(e.into());
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    net.ok_or_else(|| TrainError::Stopped("rank 0 ended without a network".into()))
}

/// A snapshot of `net` with BatchNorm's running statistics folded in on this thread. Burn keeps a running
/// statistic's latest value per updating thread and folds it in only on that thread or on
/// export; a network handed to another thread would otherwise show the previous step's
/// statistics there.
fn settled<B: AutodiffBackend>(net: &SslNetwork<B>) -> SslNetwork<B> {
    use burn::module::AutodiffModule;
    // `valid` folds every pending update in; `from_inner` gives state of its own (a clone would
    // share the running statistics that rank 0 keeps updating).
    SslNetwork::from_inner(net.valid())
}

/// The text of a caught panic.
pub(crate) fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panicked".into())
}
