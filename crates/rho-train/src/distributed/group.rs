//! `DeviceGroup`: one rank's view of a data-parallel run, as the objectives and BatchNorm see it.
//!
//! It implements [`Collectives`] (SimCLR's global negatives, SwAV's Sinkhorn sums, MoCo's
//! gathered keys) and [`BatchStatsSync`] (SyncBatchNorm) on top of any [`Transport`]. Gathers are
//! sums of zero-padded blocks, so one all-reduce primitive serves every engine.

use std::any::Any;
use std::sync::Arc;

use burn::tensor::{backend::AutodiffBackend, Tensor, TensorPrimitive};
use rho_model::{BatchStatsSync, GroupStatsReduce};
use rho_objectives::Collectives;

use super::differentiable::{all_reduce_with_grad, ReduceFn};
use super::transport::Transport;

pub struct DeviceGroup<B: AutodiffBackend> {
    transport: Arc<dyn Transport<B::InnerBackend>>,
    /// SyncBatchNorm group size (1: per-device BatchNorm).
    sync_bn: usize,
}

impl<B: AutodiffBackend> DeviceGroup<B> {
    pub fn new(transport: Arc<dyn Transport<B::InnerBackend>>, sync_bn: usize) -> Self {
        Self { transport, sync_bn }
    }

    pub fn transport(&self) -> &Arc<dyn Transport<B::InnerBackend>> {
        &self.transport
    }

    pub fn sync_bn_group(&self) -> usize {
        self.sync_bn
    }

    /// A sum over the ranks of a 2-D inner tensor, for the autodiff step (panics with the
    /// transport's error, which names the rank and the call).
    fn reducer(&self, call: &'static str) -> ReduceFn<B::InnerBackend> {
        let t = self.transport.clone();
        Arc::new(move |p| {
            let x = Tensor::<B::InnerBackend, 2>::from_primitive(TensorPrimitive::Float(p));
            let [r, c] = x.dims();
            match t.all_reduce_sum(x.reshape([r * c]), call) {
                Ok(y) => y.reshape([r, c]).into_primitive().tensor(),
                Err(e) => panic!("{e}"),
            }
        })
    }

    /// `t` placed at row block `block` of `blocks` equal blocks, zeros elsewhere.
    fn padded(t: Tensor<B, 2>, block: usize, blocks: usize) -> Tensor<B, 2> {
        let [n, d] = t.dims();
        Tensor::zeros([n * blocks, d], &t.device())
            .slice_assign([block * n..(block + 1) * n, 0..d], t)
    }

    fn sum_no_grad(&self, t: Tensor<B, 2>, call: &'static str) -> Tensor<B, 2> {
        let inner = t.inner();
        let out = (self.reducer(call))(inner.into_primitive().tensor());
        Tensor::from_inner(Tensor::from_primitive(TensorPrimitive::Float(out)))
    }
}

impl<B: AutodiffBackend> Collectives<B> for DeviceGroup<B> {
    fn world_size(&self) -> usize {
        self.transport.world_size()
    }
    fn rank(&self) -> usize {
        self.transport.rank()
    }
    fn all_reduce_sum(&self, t: Tensor<B, 2>) -> Tensor<B, 2> {
        self.sum_no_grad(t, "all_reduce")
    }
    fn all_gather(&self, t: Tensor<B, 2>) -> Tensor<B, 2> {
        let p = Self::padded(t.detach(), self.rank(), self.world_size());
        self.sum_no_grad(p, "all_gather")
    }
    fn all_gather_with_grad(&self, t: Tensor<B, 2>) -> Tensor<B, 2> {
        let p = Self::padded(t, self.rank(), self.world_size());
        all_reduce_with_grad(
            p,
            self.reducer("all_gather (with gradient)"),
            self.reducer("all_gather backward"),
        )
    }
    fn group_stats_reduce(&self) -> Option<Arc<dyn GroupStatsReduce>> {
        Some(Arc::new(GroupSums::<B> {
            reduce: self.reducer("shuffle-BN statistics"),
        }))
    }
}

/// The all-reduce of grouped BatchNorm statistics (shuffle-BN), on the run's backend.
struct GroupSums<B: AutodiffBackend> {
    reduce: ReduceFn<B::InnerBackend>,
}

impl<B: AutodiffBackend> GroupStatsReduce for GroupSums<B> {
    fn all_reduce(&self, t: Box<dyn Any>) -> Box<dyn Any> {
        let t = match t.downcast::<Tensor<B, 2>>() {
            Ok(t) => *t,
            Err(_) => panic!(
                "shuffle-BN: statistics from another backend than the run's ({})",
                std::any::type_name::<B>()
            ),
        };
        let out = (self.reduce)(t.inner().into_primitive().tensor());
        Box::new(Tensor::<B, 2>::from_inner(Tensor::from_primitive(
            TensorPrimitive::Float(out),
        )))
    }
}

impl<B: AutodiffBackend> BatchStatsSync for DeviceGroup<B> {
    fn group_size(&self) -> usize {
        self.sync_bn
    }
    fn gather(&self, row: Box<dyn Any>) -> Box<dyn Any> {
        let row = match row.downcast::<Tensor<B, 2>>() {
            Ok(r) => *r,
            Err(_) => panic!(
                "SyncBatchNorm: statistics from another backend than the run's ({})",
                std::any::type_name::<B>()
            ),
        };
        let (rank, world, g) = (self.rank(), self.world_size(), self.sync_bn);
        let k = row.dims()[1];
        let all = all_reduce_with_grad(
            Self::padded(row, rank, world),
            self.reducer("SyncBN statistics"),
            self.reducer("SyncBN backward"),
        );
        let first = rank / g * g;
        Box::new(all.slice([first..first + g, 0..k]))
    }
}
