//! `DataParallel`: a trainer's place among the replicas of a run (one device: no replicas).
//!
//! It owns the transport, the device group and SyncBN, so the trainer asks it instead of
//! branching on the rank: which shard to load, how to start from rank 0's state, where a step's
//! collectives go, and how the ranks meet at the end of an epoch.

use std::sync::Arc;

use burn::tensor::{backend::AutodiffBackend, Tensor};
use rho_data::{LoaderConfig, LoaderPosition};
use rho_model::BatchStatsSync;
use rho_objectives::{Objective, SingleDevice, SslNetwork};

use super::TrainError;
use crate::distributed::{
    broadcast_bytes_from_rank0, broadcast_from_rank0, check_agreement, DeviceGroup, Transport,
};
use crate::recipe::SyncBn;
use crate::step::StepEnv;

/// One rank's place in a data-parallel run (see [`crate::distributed`]).
pub struct RankContext<B: AutodiffBackend> {
    pub transport: Arc<dyn Transport<B::InnerBackend>>,
    /// Ranks sharing this machine's CPUs: the loader's workers are divided among them.
    pub local_ranks: usize,
}

pub struct DataParallel<B: AutodiffBackend> {
    replica: Option<Replica<B>>,
}

struct Replica<B: AutodiffBackend> {
    group: Arc<DeviceGroup<B>>,
    local_ranks: usize,
}

impl<B: AutodiffBackend> DataParallel<B> {
    /// One device, or the rank of `ctx` with the recipe's SyncBN group.
    pub fn new(ctx: Option<&RankContext<B>>, sync_bn: SyncBn) -> Result<Self, TrainError> {
        let Some(ctx) = ctx else {
            return Ok(Self { replica: None });
        };
        let group = sync_bn
            .group_size(ctx.transport.world_size())
            .map_err(TrainError::Config)?;
        Ok(Self {
            replica: Some(Replica {
                group: Arc::new(DeviceGroup::new(ctx.transport.clone(), group)),
                local_ranks: ctx.local_ranks,
            }),
        })
    }

    fn transport(&self) -> Option<&dyn Transport<B::InnerBackend>> {
        self.replica.as_ref().map(|r| r.group.transport().as_ref())
    }

    pub fn world(&self) -> usize {
        self.transport().map_or(1, |t| t.world_size())
    }

    /// Rank 0 logs, checkpoints and runs the hooks.
    pub fn is_lead(&self) -> bool {
        self.transport().is_none_or(|t| t.rank() == 0)
    }

    /// Devices sharing one BatchNorm's statistics (1: per device).
    pub fn sync_bn_group(&self) -> usize {
        self.replica.as_ref().map_or(1, |r| r.group.sync_bn_group())
    }

    /// This rank's shard of every batch, with its share of the machine's decode workers.
    pub fn shard(&self, cfg: &mut LoaderConfig) {
        if let (Some(r), Some(t)) = (&self.replica, self.transport()) {
            cfg.shard = rho_data::Shard {
                rank: t.rank(),
                world: t.world_size(),
            };
            cfg.workers = (cfg.workers / r.local_ranks.max(1)).max(1);
        }
    }

    /// Every rank continues from the same point of the same dataset, from rank 0's state.
    pub fn start_together(
        &self,
        net: SslNetwork<B>,
        method: &mut dyn Objective<B>,
        resume: (usize, LoaderPosition),
        index_signature: (u64, u64),
        device: &B::Device,
    ) -> Result<SslNetwork<B>, TrainError> {
        let Some(t) = self.transport() else {
            return Ok(net);
        };
        let (step, pos) = resume;
        check_agreement(
            t,
            device,
            &["resumed step", "loader epoch", "loader batch", "videos in the index", "hash of the video paths"],
            &[step as u64, pos.epoch, pos.cursor as u64, index_signature.0, index_signature.1],
            "every rank must see the same output folder (checkpoints) and the same dataset: put them on a shared filesystem, or pass the same --resume path to every rank",
        )?;
        let net = broadcast_from_rank0(net, t, "online network")?;
        let mut state = method.save_state()?;
        for (name, bytes) in state.iter_mut() {
            *bytes = broadcast_bytes_from_rank0(bytes, t, device, name)?;
        }
        method.load_state(&state, device)?;
        Ok(net)
    }

    /// Where a step's collectives, SyncBN and gradient averaging go.
    pub fn step_env(&self) -> StepEnv<'_, B> {
        let Some(r) = &self.replica else {
            return StepEnv {
                coll: &SingleDevice,
                bn_sync: None,
                transport: None,
                inspect_gradients: None,
            };
        };
        StepEnv {
            coll: r.group.as_ref(),
            bn_sync: (r.group.sync_bn_group() > 1)
                .then(|| r.group.clone() as Arc<dyn BatchStatsSync>),
            transport: self.transport(),
            inspect_gradients: None,
        }
    }

    /// The other ranks wait for rank 0's epoch hook (e.g. a kNN pass) without the collective
    /// timeout, which would take a long hook for a dead peer.
    pub fn end_of_epoch(&self, epochs_done: u64, device: &B::Device) -> Result<(), TrainError> {
        if let Some(t) = self.transport() {
            t.all_reduce_sum_untimed(
                Tensor::zeros([1], device),
                &format!("end of epoch {epochs_done} (rank 0 runs the epoch hook)"),
            )?;
        }
        Ok(())
    }
}
