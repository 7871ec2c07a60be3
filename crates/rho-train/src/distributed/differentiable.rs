//! An all-reduce that gradients flow through: forward sums a tensor over the ranks, backward
//! sums the incoming gradients over the ranks (∂(Σ_s L_s)/∂x_r = Σ_s ∂L_s/∂y, since every rank's
//! y is the same sum). SyncBatchNorm's statistics and SimCLR's gathered negatives need exactly
//! this; without it each rank would miss the other ranks' share of its gradient.
//!
//! Burn has no differentiable collective outside its CUDA-only `distributed` feature, so this is
//! a custom autodiff step. Engine code is generic over `B: AutodiffBackend`; the step is
//! attached when the tensor is Burn's `Autodiff` tensor (checked at run time), which is what
//! every rho binary uses.

use std::any::Any;
use std::sync::Arc;

use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::AutodiffBackend, backend::Backend, Tensor, TensorPrimitive};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn_autodiff::Autodiff;

/// A sum over the ranks of an inner-backend tensor (panics on transport failure: it runs inside
/// the forward and backward passes, which cannot return errors; the driver reports the panic).
pub type ReduceFn<IB> = Arc<dyn Fn(FloatTensor<IB>) -> FloatTensor<IB> + Send + Sync>;

struct Reducer<IB: Backend>(ReduceFn<IB>);

impl<IB: Backend> Clone for Reducer<IB> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<IB: Backend> std::fmt::Debug for Reducer<IB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("all-reduce")
    }
}

#[derive(Debug)]
struct AllReduceBackward;

impl<IB: Backend> Backward<IB, 1> for AllReduceBackward {
    type State = Reducer<IB>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let reduce = ops.state.0.clone();
        unary::<IB, _>(ops.parents, ops.node, grads, |g| reduce(g));
    }
}

/// `Σ_ranks t`, differentiable (see the module docs).
///
/// # Panics
/// When `B` is not Burn's `Autodiff` backend (no custom backward steps elsewhere).
pub fn all_reduce_with_grad<B: AutodiffBackend>(
    t: Tensor<B, 2>,
    forward: ReduceFn<B::InnerBackend>,
    backward: ReduceFn<B::InnerBackend>,
) -> Tensor<B, 2> {
    type Prim<IB> = FloatTensor<Autodiff<IB>>;
    let prim: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    let tensor = match prim.downcast::<Prim<B::InnerBackend>>() {
        Ok(t) => *t,
        Err(_) => panic!(
            "differentiable collectives need burn's Autodiff backend, not {}",
            std::any::type_name::<B>()
        ),
    };
    let out = forward(tensor.primitive.clone());
    let out = match <AllReduceBackward as Backward<B::InnerBackend, 1>>::prepare::<NoCheckpointing>(
        AllReduceBackward,
        [tensor.node.clone()],
    )
    .compute_bound()
    .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(Reducer(backward), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    let back: Box<dyn Any> = Box::new(out);
    match back.downcast::<FloatTensor<B>>() {
        Ok(p) => Tensor::from_primitive(TensorPrimitive::Float(*p)),
        Err(_) => unreachable!("the primitive type was checked above"),
    }
}
