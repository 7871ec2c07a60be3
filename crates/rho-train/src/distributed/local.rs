//! `LocalTransport`: the devices of one process, over burn-collective's local all-reduce.
//!
//! burn-collective blocks a caller until every peer has made the same call, with no timeout, so
//! every call is recorded in a shared [`Watch`]; the driver that started the ranks checks it and
//! reports a rank stuck in a collective (and where the others are) instead of hanging.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::collective::{self, AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation};
use burn::tensor::{backend::Backend, Tensor, TensorPrimitive};

use super::transport::{CollectiveError, Transport};

/// What each rank is doing, for timeout reports.
#[derive(Debug)]
pub struct Watch {
    ranks: Mutex<Vec<RankState>>,
}

#[derive(Debug, Clone, Default)]
struct RankState {
    /// Collectives completed.
    done: u64,
    /// The call in progress, when it started, and whether the timeout applies to it.
    waiting: Option<(String, Instant, bool)>,
}

impl Watch {
    pub fn new(world: usize) -> Arc<Self> {
        Arc::new(Self {
            ranks: Mutex::new(vec![RankState::default(); world]),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RankState>> {
        self.ranks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enter(&self, rank: usize, call: &str, timed: bool) -> u64 {
        let mut r = self.lock();
        r[rank].waiting = Some((call.to_string(), Instant::now(), timed));
        r[rank].done
    }

    fn leave(&self, rank: usize) {
        let mut r = self.lock();
        r[rank].waiting = None;
        r[rank].done += 1;
    }

    /// The first rank that has waited longer than `limit_s` in a collective, as an error naming
    /// the ranks that have not joined it.
    pub fn stuck(&self, limit_s: f64) -> Option<CollectiveError> {
        let r = self.lock();
        let (rank, (call, since, _)) = r
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.waiting.clone().map(|w| (i, w)))
            .find(|(_, (_, since, timed))| *timed && since.elapsed().as_secs_f64() > limit_s)?;
        let seq = r[rank].done;
        let missing: Vec<String> = r
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != rank && !(s.done == seq && s.waiting.is_some()))
            .map(|(i, s)| match &s.waiting {
                Some((c, _, _)) => format!("rank {i} (waiting in #{} {c})", s.done),
                None => format!("rank {i} (computing after #{})", s.done),
            })
            .collect();
        Some(CollectiveError::Timeout {
            rank,
            seq,
            call,
            waited_s: since.elapsed().as_secs_f64(),
            waiting_for: missing.join(", "),
        })
    }
}

/// One device's end of an in-process group.
pub struct LocalTransport<B: Backend> {
    rank: usize,
    world: usize,
    watch: Arc<Watch>,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> LocalTransport<B> {
    /// Registers this rank's device with burn-collective; blocks until all `world` have.
    pub fn register(
        rank: usize,
        world: usize,
        device: &B::Device,
        watch: Arc<Watch>,
    ) -> Result<Self, CollectiveError> {
        let config = CollectiveConfig::default()
            .with_num_devices(world)
            .with_local_all_reduce_strategy(AllReduceStrategy::Tree(2));
        watch.enter(rank, "register", true);
        collective::register::<B>(PeerId::from(rank), device.clone(), config).map_err(|e| {
            CollectiveError::Setup(format!(
                "rank {rank}: burn-collective registration of {world} devices failed: {e:?}"
            ))
        })?;
        watch.leave(rank);
        Ok(Self {
            rank,
            world,
            watch,
            _backend: std::marker::PhantomData,
        })
    }

    /// Leaves the group (every rank, at the end of a run).
    pub fn finish(&self) {
        let _ = collective::finish_collective::<B>(PeerId::from(self.rank));
    }
}

impl<B: Backend> Transport<B> for LocalTransport<B> {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_reduce(
        &self,
        t: Tensor<B, 1>,
        call: &str,
        timed: bool,
    ) -> Result<Tensor<B, 1>, CollectiveError> {
        self.reduce(t, call, timed)
    }
    fn describe(&self) -> String {
        format!("burn-collective (in-process), {} devices", self.world)
    }
}

impl<B: Backend> LocalTransport<B> {
    fn reduce(
        &self,
        t: Tensor<B, 1>,
        call: &str,
        timed: bool,
    ) -> Result<Tensor<B, 1>, CollectiveError> {
        let seq = self.watch.enter(self.rank, call, timed);
        let out = collective::all_reduce::<B>(
            PeerId::from(self.rank),
            t.into_primitive().tensor(),
            ReduceOperation::Sum,
        )
        .map_err(|e| CollectiveError::Failed {
            rank: self.rank,
            seq,
            call: call.to_string(),
            reason: format!("{e:?}"),
        })?;
        self.watch.leave(self.rank);
        Ok(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }
}
