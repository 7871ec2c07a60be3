//! Host BatchNorm (with its residual add and ReLU) as one autodiff step: the forward keeps x,
//! the statistics, γ and, after a ReLU, its output; the backward computes dx, dγ, dβ and the
//! residual's gradient in two passes, where composed tensor ops record a dozen single-threaded
//! passes on the CPU backends.

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, TensorMetadata};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::Autodiff;

use super::kernels::{self, Epilogue, Moments, NormShape, Saved};
use crate::host_backend::{read, write, Real};

fn read_f64<IB: Backend>(t: &FloatTensor<IB>) -> Vec<f64> {
    match t.dtype() {
        DType::F64 => read::<IB, f64>(t).into_owned(),
        _ => read::<IB, f32>(t).iter().map(|v| *v as f64).collect(),
    }
}

fn write_as<IB: Backend>(v: &[f64], dtype: DType, device: &IB::Device) -> FloatTensor<IB> {
    let shape = vec![v.len()];
    match dtype {
        DType::F64 => write::<IB, f64>(v.to_vec(), shape, device),
        _ => write::<IB, f32>(v.iter().map(|x| *x as f32).collect(), shape, device),
    }
}

fn shape_of<IB: Backend>(x: &FloatTensor<IB>) -> NormShape {
    let d = x.shape().dims::<3>();
    NormShape {
        n: d[0],
        c: d[1],
        s: d[2],
    }
}

/// The normalisation's parameters as host values.
pub struct Affine {
    pub gamma: Vec<f64>,
    pub beta: Vec<f64>,
    pub eps: f64,
}

fn forward_typed<IB: Backend, T: Real>(
    x: &FloatTensor<IB>,
    skip: Option<&FloatTensor<IB>>,
    relu: bool,
    p: &Affine,
) -> (FloatTensor<IB>, Moments) {
    let sh = shape_of::<IB>(x);
    let skip = skip.map(|s| read::<IB, T>(s));
    let epi = Epilogue {
        skip: skip.as_deref(),
        relu,
    };
    let (y, m) = kernels::forward::<T>(&read::<IB, T>(x), sh, &p.gamma, &p.beta, p.eps, epi);
    (
        write::<IB, T>(y, vec![sh.n, sh.c, sh.s], &IB::float_device(x)),
        m,
    )
}

/// act(BatchNorm(x) [+ skip]) with batch statistics on the inner backend; x is [n, c, s] of
/// f32 or f64, and `skip` has its shape and dtype.
pub fn forward<IB: Backend>(
    x: &FloatTensor<IB>,
    skip: Option<&FloatTensor<IB>>,
    relu: bool,
    p: &Affine,
) -> (FloatTensor<IB>, Moments) {
    match x.dtype() {
        DType::F64 => forward_typed::<IB, f64>(x, skip, relu, p),
        _ => forward_typed::<IB, f32>(x, skip, relu, p),
    }
}

/// What the backward step keeps.
#[derive(Debug, Clone)]
struct NormState<IB: Backend> {
    x: FloatTensor<IB>,
    relu_out: Option<FloatTensor<IB>>,
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    gamma: Vec<f64>,
}

/// Parents: x, γ, β and, when N = 4, the residual.
#[derive(Debug)]
struct NormBackward<const N: usize>;

struct Grads<IB: Backend> {
    dx: Option<FloatTensor<IB>>,
    dskip: Option<FloatTensor<IB>>,
    dgamma: FloatTensor<IB>,
    dbeta: FloatTensor<IB>,
}

fn backward_typed<IB: Backend, T: Real>(
    st: &NormState<IB>,
    dy: &FloatTensor<IB>,
    need: (bool, bool),
) -> Grads<IB> {
    let sh = shape_of::<IB>(&st.x);
    let device = IB::float_device(dy);
    let (x, y) = (
        read::<IB, T>(&st.x),
        st.relu_out.as_ref().map(read::<IB, T>),
    );
    let saved = Saved {
        x: &x,
        relu_out: y.as_deref(),
        mean: &st.mean,
        inv_std: &st.inv_std,
        gamma: &st.gamma,
    };
    let g = kernels::backward::<T>(&saved, &read::<IB, T>(dy), sh, need);
    let dims = vec![sh.n, sh.c, sh.s];
    let dtype = dy.dtype();
    Grads {
        dx: g.dx.map(|v| write::<IB, T>(v, dims.clone(), &device)),
        dskip: g.dskip.map(|v| write::<IB, T>(v, dims.clone(), &device)),
        dgamma: write_as::<IB>(&g.dgamma, dtype, &device),
        dbeta: write_as::<IB>(&g.dbeta, dtype, &device),
    }
}

impl<IB: Backend, const N: usize> Backward<IB, N> for NormBackward<N> {
    type State = NormState<IB>;

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let parents = ops.parents;
        let dy = grads.consume::<IB>(&ops.node);
        let need_skip = N == 4 && parents[N - 1].is_some();
        let need = (parents[0].is_some(), need_skip);
        let g = match dy.dtype() {
            DType::F64 => backward_typed::<IB, f64>(&ops.state, &dy, need),
            _ => backward_typed::<IB, f32>(&ops.state, &dy, need),
        };
        let [x, gamma, beta] = [0, 1, 2].map(|i| parents[i].clone());
        let skip = (N == 4).then(|| parents[N - 1].clone()).flatten();
        for (node, grad) in [
            (x, g.dx),
            (gamma, Some(g.dgamma)),
            (beta, Some(g.dbeta)),
            (skip, g.dskip),
        ] {
            if let (Some(node), Some(grad)) = (node, grad) {
                grads.register::<IB>(node.id, grad);
            }
        }
    }
}

/// The tensors of a fused BatchNorm step under autodiff.
pub struct TrackedInputs<IB: Backend> {
    pub x: FloatTensor<Autodiff<IB>>,
    pub gamma: FloatTensor<Autodiff<IB>>,
    pub beta: FloatTensor<Autodiff<IB>>,
    pub skip: Option<FloatTensor<Autodiff<IB>>>,
}

/// [`forward`] under autodiff, with the two-pass backward.
pub fn forward_tracked<IB: Backend>(
    t: TrackedInputs<IB>,
    relu: bool,
    eps: f64,
) -> (FloatTensor<Autodiff<IB>>, Moments) {
    let p = Affine {
        gamma: read_f64::<IB>(&t.gamma.primitive),
        beta: read_f64::<IB>(&t.beta.primitive),
        eps,
    };
    let skip_inner = t.skip.as_ref().map(|s| s.primitive.clone());
    let (y, m) = forward::<IB>(&t.x.primitive, skip_inner.as_ref(), relu, &p);
    let state = NormState {
        x: t.x.primitive.clone(),
        relu_out: relu.then(|| y.clone()),
        mean: m.mean.clone(),
        inv_std: m.inv_std(eps),
        gamma: p.gamma,
    };
    let (xn, gn, bn) = (t.x.node.clone(), t.gamma.node.clone(), t.beta.node.clone());
    let y = match t.skip {
        Some(s) => match NormBackward::<4>
            .prepare::<NoCheckpointing>([xn, gn, bn, s.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
        None => match NormBackward::<3>
            .prepare::<NoCheckpointing>([xn, gn, bn])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(state, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        },
    };
    (y, m)
}

/// [`forward`] without autodiff (γ and β read from their tensors).
pub fn forward_plain<IB: Backend>(
    x: FloatTensor<IB>,
    gamma: FloatTensor<IB>,
    beta: FloatTensor<IB>,
    skip: Option<FloatTensor<IB>>,
    relu: bool,
    eps: f64,
) -> (FloatTensor<IB>, Moments) {
    let p = Affine {
        gamma: read_f64::<IB>(&gamma),
        beta: read_f64::<IB>(&beta),
        eps,
    };
    forward::<IB>(&x, skip.as_ref(), relu, &p)
}
