//! The host BatchNorm against the composed one (Burn tensor ops): output, dx, dγ, dβ and the
//! running estimates, in f64 and f32, for backbone and head shapes.

use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::tensor::{DType, Distribution, Tensor};

use super::NormStrategy;
use crate::norm::BatchNorm;

type AB = Autodiff<Flex>;

fn rel_err<const D: usize>(got: Tensor<AB, D>, want: Tensor<AB, D>) -> f64 {
    let scale = want.clone().abs().max().into_scalar() as f64;
    let err = (got - want).abs().max().into_scalar() as f64;
    err / scale.max(f64::MIN_POSITIVE)
}

fn bn(c: usize, dtype: DType, strategy: NormStrategy) -> BatchNorm<AB> {
    let dev = Default::default();
    let mut bn = BatchNorm::<AB>::new(c, 1e-5, 0.1, &dev);
    let param = |mean: f64| {
        let t = Tensor::<AB, 1>::random([c], Distribution::Normal(mean, 0.5), (&dev, dtype));
        Param::from_tensor(t.require_grad())
    };
    let state =
        |v: f64| burn::module::RunningState::new(Tensor::<AB, 1>::full([c], v, (&dev, dtype)));
    bn.running_mean = state(0.0);
    bn.running_var = state(1.0);
    bn.gamma = param(1.0);
    bn.beta = param(0.0);
    bn.strategy = strategy;
    bn
}

/// Output, every gradient and the running estimates after two calls (ρ clips share a
/// BatchNorm), host against composed, for BatchNorm alone, with a ReLU, and with a residual
/// and a ReLU (the end of a residual block).
fn compare<const D: usize>(dims: [usize; D], dtype: DType, x_grad: bool, tol: f64) {
    for (skip, relu) in [(false, false), (false, true), (true, true)] {
        compare_fused(dims, dtype, x_grad, (skip, relu), tol);
    }
}

fn compare_fused<const D: usize>(
    dims: [usize; D],
    dtype: DType,
    x_grad: bool,
    (with_skip, relu): (bool, bool),
    tol: f64,
) {
    let dev = Default::default();
    let c = dims[1];
    let host = bn(c, dtype, NormStrategy::Host);
    let mut composed = bn(c, dtype, NormStrategy::Composed);
    composed.gamma = Param::from_tensor(host.gamma.val().detach().require_grad());
    composed.beta = Param::from_tensor(host.beta.val().detach().require_grad());
    let xs: Vec<Tensor<AB, D>> = (0..2)
        .map(|k| {
            let x = Tensor::random(dims, Distribution::Normal(k as f64, 2.0), (&dev, dtype));
            if x_grad {
                x.require_grad()
            } else {
                x
            }
        })
        .collect();
    let probe = Tensor::<AB, D>::random(dims, Distribution::Normal(0.0, 1.0), (&dev, dtype));
    let skip = with_skip.then(|| {
        Tensor::<AB, D>::random(dims, Distribution::Normal(0.0, 1.0), (&dev, dtype)).require_grad()
    });
    let run = |m: &BatchNorm<AB>| {
        let ys: Vec<Tensor<AB, D>> = xs
            .iter()
            .map(|x| m.forward_fused(x.clone(), skip.clone(), relu))
            .collect();
        let loss = ys
            .iter()
            .map(|y| (y.clone() * probe.clone()).sum())
            .reduce(|a, b| a + b)
            .unwrap();
        (ys, loss.backward())
    };
    let (yh, gh) = run(&host);
    let (yc, gc) = run(&composed);
    let what = format!("{dims:?} {dtype:?} skip {with_skip} relu {relu}");
    if let Some(k) = &skip {
        let e = rel_err(
            Tensor::from_inner(k.grad(&gh).unwrap()),
            Tensor::from_inner(k.grad(&gc).unwrap()),
        );
        assert!(e < tol, "{what}: dskip, relative error {e:.2e}");
    }
    for (a, b) in yh.into_iter().zip(yc) {
        assert_eq!(a.dtype(), dtype);
        let e = rel_err(a, b);
        assert!(e < tol, "{what}: output, relative error {e:.2e}");
    }
    if x_grad {
        for x in &xs {
            let e = rel_err(
                Tensor::from_inner(x.grad(&gh).unwrap()),
                Tensor::from_inner(x.grad(&gc).unwrap()),
            );
            assert!(e < tol, "{what}: dx, relative error {e:.2e}");
        }
    } else {
        assert!(xs[0].grad(&gh).is_none());
    }
    for (name, p, q) in [
        ("dγ", host.gamma.val(), composed.gamma.val()),
        ("dβ", host.beta.val(), composed.beta.val()),
    ] {
        let e = rel_err(
            Tensor::from_inner(p.grad(&gh).unwrap()),
            Tensor::from_inner(q.grad(&gc).unwrap()),
        );
        assert!(e < tol, "{what}: {name}, relative error {e:.2e}");
    }
    for (name, p, q) in [
        (
            "running mean",
            host.running_mean.value_sync(),
            composed.running_mean.value_sync(),
        ),
        (
            "running var",
            host.running_var.value_sync(),
            composed.running_var.value_sync(),
        ),
    ] {
        assert_eq!(p.dtype(), dtype, "{what}: {name} dtype");
        let e = rel_err(p, q);
        assert!(e < tol, "{what}: {name}, relative error {e:.2e}");
    }
}

/// Both paths are exact in f64 (the composed one since its means multiply by 1/count: a
/// `div_scalar` there put an f32-rounded factor into dx, about 1e-8 relative; docs/architecture.md
/// "Exact f64 gradients"), so the comparison is at 1e-12. The check against the formulas is
/// [`host_batch_norm_equals_the_closed_form_in_f64`].
#[test]
fn host_batch_norm_matches_composed_ops_in_f64() {
    compare([2, 3, 2, 5, 7], DType::F64, true, 1e-12);
    compare([1, 4, 1, 3, 3], DType::F64, true, 1e-12); // batch 1, T = 1; 9 values a channel
    compare([16, 24], DType::F64, true, 1e-12); // a head's 1-D BatchNorm
    compare([2, 3, 2, 5, 7], DType::F64, false, 1e-12); // the input needs no gradient
}

fn host_vec<const D: usize>(t: Tensor<AB, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec().unwrap()
}

/// y, dx, dγ and dβ of L = Σ probe·BN(x) by their formulas, value by value, in f64.
#[test]
fn host_batch_norm_equals_the_closed_form_in_f64() {
    let dev = Default::default();
    let (n, c, s) = (3usize, 4usize, 30usize);
    let m = bn(c, DType::F64, NormStrategy::Host);
    let x = Tensor::<AB, 5>::random(
        [n, c, 2, 3, 5],
        Distribution::Normal(1.0, 2.0),
        (&dev, DType::F64),
    )
    .require_grad();
    let probe =
        Tensor::<AB, 5>::random(x.dims(), Distribution::Normal(0.0, 1.0), (&dev, DType::F64));
    let y = m.forward(x.clone());
    let g = (y.clone() * probe.clone()).sum().backward();
    let (yv, dx) = (
        host_vec(y),
        host_vec(Tensor::<AB, 5>::from_inner(x.grad(&g).unwrap())),
    );
    let dg = host_vec(Tensor::<AB, 1>::from_inner(m.gamma.val().grad(&g).unwrap()));
    let db = host_vec(Tensor::<AB, 1>::from_inner(m.beta.val().grad(&g).unwrap()));
    let (xv, pv) = (host_vec(x), host_vec(probe));
    let (gv, bv) = (host_vec(m.gamma.val()), host_vec(m.beta.val()));
    let close = |a: f64, b: f64, what: &str| {
        assert!(
            (a - b).abs() <= 1e-13 * (1.0 + b.abs()),
            "{what}: {a} vs {b}"
        )
    };
    for j in 0..c {
        let idx: Vec<usize> = (0..n)
            .flat_map(|i| (0..s).map(move |k| (i * c + j) * s + k))
            .collect();
        let cnt = idx.len() as f64;
        let mean = idx.iter().map(|&k| xv[k]).sum::<f64>() / cnt;
        let var = idx.iter().map(|&k| (xv[k] - mean).powi(2)).sum::<f64>() / cnt;
        let inv = 1.0 / (var + 1e-5).sqrt();
        let xh = |k: usize| (xv[k] - mean) * inv;
        let sdy: f64 = idx.iter().map(|&k| pv[k]).sum();
        let sdyx: f64 = idx.iter().map(|&k| pv[k] * xh(k)).sum();
        close(db[j], sdy, "dβ");
        close(dg[j], sdyx, "dγ");
        for &k in &idx {
            close(yv[k], gv[j] * xh(k) + bv[j], "y");
            close(
                dx[k],
                gv[j] * inv * (pv[k] - sdy / cnt - xh(k) * sdyx / cnt),
                "dx",
            );
        }
    }
}

#[test]
fn host_batch_norm_matches_composed_ops_in_f32() {
    compare([2, 8, 4, 9, 9], DType::F32, true, 1e-4);
    compare([3, 16, 1, 20, 20], DType::F32, true, 1e-4);
    compare([16, 24], DType::F32, true, 1e-4);
}

#[test]
fn host_backends_get_the_host_path() {
    assert_eq!(NormStrategy::for_backend::<AB>(), NormStrategy::Host);
    assert_eq!(NormStrategy::for_backend::<Flex>(), NormStrategy::Host);
}
