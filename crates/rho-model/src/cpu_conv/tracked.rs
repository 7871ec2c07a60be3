//! The host convolution as one autodiff step: forward and backward both run the GEMM kernels
//! on the inner backend's data, so autodiff never falls back to Burn's default backward (a
//! transposed convolution for dX and a dim-swapped convolution for dW, 3–7× the forward pass on
//! the CPU backends).

use burn::tensor::ops::FloatTensor;
use burn::tensor::{backend::Backend, DType, TensorMetadata};
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_autodiff::Autodiff;

use super::geometry::ConvGeometry;
use super::kernels::{self, Needs};

use crate::host_backend::{read, write};

pub use crate::host_backend::is_host_dtype;

fn out_shape(g: &ConvGeometry) -> [usize; 5] {
    let [d, h, w] = g.output().unwrap_or_default();
    [g.batch, g.out_channels, d, h, w]
}

fn weight_shape(g: &ConvGeometry) -> [usize; 5] {
    let [kd, kh, kw] = g.kernel;
    [g.out_channels, g.in_channels, kd, kh, kw]
}

/// y = conv(x, w) on the inner backend.
pub fn forward<IB: Backend>(
    x: FloatTensor<IB>,
    w: FloatTensor<IB>,
    g: &ConvGeometry,
) -> FloatTensor<IB> {
    let device = IB::float_device(&x);
    let shape = out_shape(g);
    match x.dtype() {
        DType::F64 => {
            let y = kernels::forward::<f64>(g, &read::<IB, f64>(&x), &read::<IB, f64>(&w));
            write::<IB, f64>(y, shape.to_vec(), &device)
        }
        _ => {
            let y = kernels::forward::<f32>(g, &read::<IB, f32>(&x), &read::<IB, f32>(&w));
            write::<IB, f32>(y, shape.to_vec(), &device)
        }
    }
}

type Grads<IB> = (Option<FloatTensor<IB>>, Option<FloatTensor<IB>>);

fn backward_inner<IB: Backend>(
    state: HostConvState<IB>,
    dy: FloatTensor<IB>,
    needs: Needs,
) -> Grads<IB> {
    let HostConvState { x, w, geometry: g } = state;
    let device = IB::float_device(&dy);
    let xs = [g.batch, g.in_channels, g.input[0], g.input[1], g.input[2]];
    let ws = weight_shape(&g);
    match dy.dtype() {
        DType::F64 => {
            let (x, w, dy) = (
                read::<IB, f64>(&x),
                read::<IB, f64>(&w),
                read::<IB, f64>(&dy),
            );
            let (dx, dw) = kernels::backward::<f64>(&g, &x, &w, &dy, needs);
            (
                dx.map(|v| write::<IB, f64>(v, xs.to_vec(), &device)),
                dw.map(|v| write::<IB, f64>(v, ws.to_vec(), &device)),
            )
        }
        _ => {
            let (x, w, dy) = (
                read::<IB, f32>(&x),
                read::<IB, f32>(&w),
                read::<IB, f32>(&dy),
            );
            let (dx, dw) = kernels::backward::<f32>(&g, &x, &w, &dy, needs);
            (
                dx.map(|v| write::<IB, f32>(v, xs.to_vec(), &device)),
                dw.map(|v| write::<IB, f32>(v, ws.to_vec(), &device)),
            )
        }
    }
}

/// What the backward step keeps: the inputs (as Burn's own conv3d step keeps them).
#[derive(Debug, Clone)]
struct HostConvState<IB: Backend> {
    x: FloatTensor<IB>,
    w: FloatTensor<IB>,
    geometry: ConvGeometry,
}

#[derive(Debug)]
struct HostConvBackward;

impl<IB: Backend> Backward<IB, 2> for HostConvBackward {
    type State = HostConvState<IB>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let dy = grads.consume::<IB>(&ops.node);
        let needs = Needs {
            input: node_x.is_some(),
            weight: node_w.is_some(),
        };
        let (dx, dw) = backward_inner::<IB>(ops.state, dy, needs);
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<IB>(node.id, dx);
        }
        if let (Some(node), Some(dw)) = (node_w, dw) {
            grads.register::<IB>(node.id, dw);
        }
    }
}

/// y = conv(x, w) under autodiff, with the GEMM backward.
pub fn forward_tracked<IB: Backend>(
    x: FloatTensor<Autodiff<IB>>,
    w: FloatTensor<Autodiff<IB>>,
    g: &ConvGeometry,
) -> FloatTensor<Autodiff<IB>> {
    let y = forward::<IB>(x.primitive.clone(), w.primitive.clone(), g);
    match HostConvBackward
        .prepare::<NoCheckpointing>([x.node.clone(), w.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(
            HostConvState {
                x: x.primitive,
                w: w.primitive,
                geometry: *g,
            },
            y,
        ),
        OpsKind::UnTracked(prep) => prep.finish(y),
    }
}
