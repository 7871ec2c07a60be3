//! Data parallelism over the devices of one process: one thread per device, each a
//! [`Trainer`] over a [`LocalTransport`].
//!
//! The caller's thread only supervises: it forwards rank 0's step logs and epoch ends to the
//! callbacks, returns the first error of any rank (named), and reports a rank stuck in a
//! collective past the timeout instead of hanging (stuck threads cannot be cancelled; they
//! end with the process).

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use burn::tensor::backend::AutodiffBackend;
use rho_objectives::SslNetwork;

use super::local::{LocalTransport, Watch};
use crate::engine::{FnHooks, Hooks, RankContext, RunOptions, StepLog, TrainError, Trainer};
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
    on_step: impl FnMut(&StepLog),
    on_epoch: impl FnMut(u64, &SslNetwork<B>) -> Result<(), TrainError>,
) -> Result<SslNetwork<B>, TrainError> {
    let world = devices.len();
    let mut hooks = FnHooks { on_step, on_epoch };
    match world {
        0 => return Err(TrainError::Config("no devices given".into())),
        1 => return Trainer::new(recipe, &devices[0], opts, None)?.run(&mut hooks),
        _ => {}
    }
    let _one_run = RUN.lock().unwrap_or_else(|e| e.into_inner());
    burn::collective::reset_collective::<B::InnerBackend>();
    let watch = Watch::new(world);
    let (tx, rx) = channel::<Report<B>>();
    for (rank, device) in devices.iter().enumerate() {
        let rank = RankThread {
            rank,
            world,
            device: device.clone(),
            watch: watch.clone(),
            tx: tx.clone(),
        };
        rank.spawn(recipe.clone(), opts.clone())?;
    }
    drop(tx);
    supervise(rx, &watch, world, collective_timeout_s, &mut hooks)
}

/// One rank's thread: a [`Trainer`] over a [`LocalTransport`], reporting to the supervisor.
struct RankThread<B: AutodiffBackend> {
    rank: usize,
    world: usize,
    device: B::Device,
    watch: Arc<Watch>,
    tx: Sender<Report<B>>,
}

impl<B: AutodiffBackend> RankThread<B> {
    fn spawn(self, recipe: Recipe, opts: RunOptions) -> Result<(), TrainError> {
        let rank = self.rank;
        std::thread::Builder::new()
            .name(format!("rho-rank-{rank}"))
            .spawn(move || {
                let work = || self.train(&recipe, opts);
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
                    .unwrap_or_else(|p| {
                        Err(TrainError::Panicked {
                            rank,
                            message: panic_message(p),
                        })
                    });
                let _ = self.tx.send(Report::Done(rank, result));
            })
            .map(|_| ())
            .map_err(|e| TrainError::Config(format!("cannot start the thread of rank {rank}: {e}")))
    }

    /// Trains; rank 0 returns its network (settled for the caller's thread).
    fn train(
        &self,
        recipe: &Recipe,
        opts: RunOptions,
    ) -> Result<Option<SslNetwork<B>>, TrainError> {
        let (rank, world) = (self.rank, self.world);
        let transport = LocalTransport::<B::InnerBackend>::register(
            rank,
            world,
            &self.device,
            self.watch.clone(),
        )?;
        let transport = Arc::new(transport);
        let ctx = RankContext {
            transport: transport.clone(),
            local_ranks: world,
        };
        let mut hooks = FnHooks {
            on_step: |log: &StepLog| {
                let _ = self.tx.send(Report::Step(log.clone()));
            },
            on_epoch: |epoch, net: &SslNetwork<B>| {
                let _ = self.tx.send(Report::Epoch(epoch, settled(net)));
                Ok(())
            },
        };
        let net = Trainer::new(recipe, &self.device, opts, Some(&ctx))?.run(&mut hooks)?;
        transport.finish();
        Ok((rank == 0).then(|| settled(&net)))
    }
}

/// Forwards rank 0's reports to `hooks` until every rank is done; the first rank error, or a
/// rank stuck in a collective past the timeout, ends the run.
fn supervise<B: AutodiffBackend>(
    rx: Receiver<Report<B>>,
    watch: &Watch,
    world: usize,
    collective_timeout_s: f64,
    hooks: &mut impl Hooks<B>,
) -> Result<SslNetwork<B>, TrainError> {
    let (mut done, mut net) = (0, None);
    while done < world {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(Report::Step(log)) => hooks.on_step(&log),
            Ok(Report::Epoch(e, n)) => hooks.on_epoch(e, &n)?,
            Ok(Report::Done(_, Ok(n))) => {
                done += 1;
                net = net.or(n);
            }
            Ok(Report::Done(rank, Err(e))) => {
                return Err(TrainError::Rank {
                    rank,
                    error: Box::new(e),
                })
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(e) = watch.stuck(collective_timeout_s) {
                    return Err(e.into());
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    net.ok_or_else(|| TrainError::Config("rank 0 ended without a network".into()))
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
