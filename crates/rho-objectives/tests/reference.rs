//! The losses against `lightly` (scripts/make_objective_fixtures.py): values to 1e-5 relative,
//! gradients with respect to the raw embeddings to 1e-4 relative L2 error.

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use burn::module::Param;
use burn::nn::LinearConfig;
use burn::tensor::{Tensor, TensorData};
use rho_model::weights::StateDict;
use rho_objectives::*;

type AB = Autodiff<Flex>;

struct Fx(StateDict);

impl Fx {
    fn load() -> Self {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/objectives.safetensors");
        Fx(StateDict::read(&p).unwrap())
    }
    fn vec(&self, k: &str) -> Vec<f32> {
        self.0
            .tensors
            .get(k)
            .unwrap_or_else(|| panic!("fixture has no `{k}`"))
            .data
            .clone()
    }
    fn t2(&self, k: &str) -> Tensor<AB, 2> {
        let t = self.0.tensors.get(k).unwrap();
        Tensor::from_data(
            TensorData::new(t.data.clone(), [t.shape[0], t.shape[1]]),
            &Default::default(),
        )
    }
    fn leaf(&self, k: &str) -> Tensor<AB, 2> {
        self.t2(k).require_grad()
    }
    fn scalar(&self, k: &str) -> f64 {
        self.vec(k)[0] as f64
    }
}

fn value(t: Tensor<AB, 1>) -> f64 {
    t.into_data().to_vec::<f32>().unwrap()[0] as f64
}

fn assert_loss(got: f64, want: f64, what: &str) {
    let rel = (got - want).abs() / want.abs().max(1e-12);
    assert!(
        rel < 1e-5,
        "{what}: rho {got} vs reference {want} (relative error {rel:e})"
    );
}

fn assert_grad(got: Tensor<Flex, 2>, want: &[f32], scale: f32, what: &str) {
    let got = got.into_data().to_vec::<f32>().unwrap();
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| ((a - scale * b) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| ((scale * b) as f64).powi(2)).sum();
    let rel = (num / den).sqrt();
    assert!(rel < 1e-4, "{what}: gradient relative L2 error {rel:e}");
}

#[test]
fn nt_xent_matches_lightly() {
    let fx = Fx::load();
    let (a, b) = (fx.leaf("ntxent.z0"), fx.leaf("ntxent.z1"));
    let loss = nt_xent(
        l2_normalize(a.clone()),
        l2_normalize(b.clone()),
        0.1,
        &SingleDevice,
    );
    let grads = loss.backward();
    assert_loss(value(loss), fx.scalar("ntxent.loss"), "NT-Xent");
    assert_grad(
        a.grad(&grads).unwrap(),
        &fx.vec("ntxent.grad_z0"),
        1.0,
        "NT-Xent dz0",
    );
    assert_grad(
        b.grad(&grads).unwrap(),
        &fx.vec("ntxent.grad_z1"),
        1.0,
        "NT-Xent dz1",
    );
}

#[test]
fn moco_info_nce_and_queue_match_lightly() {
    let fx = Fx::load();
    let q = fx.leaf("moco.q");
    let k = l2_normalize(fx.t2("moco.k"));
    let queue = fx.t2("moco.queue");
    let loss = info_nce_per_positive(
        l2_normalize(q.clone()),
        &[k.clone()],
        queue.clone(),
        0.1,
        None,
    );
    let grads = loss.backward();
    assert_loss(value(loss), fx.scalar("moco.loss"), "InfoNCE");
    assert_grad(
        q.grad(&grads).unwrap(),
        &fx.vec("moco.grad_q"),
        1.0,
        "InfoNCE dq",
    );
    // With one positive the paper's multi-positive form is the same loss.
    let multi = info_nce_multi_positive(
        l2_normalize(fx.t2("moco.q")),
        &[k.clone()],
        queue.clone(),
        0.1,
        None,
    );
    assert_loss(
        value(multi),
        fx.scalar("moco.loss"),
        "InfoNCE eq. (1), one positive",
    );
    // The queue receives the (normalised) keys at its pointer.
    let k_len = queue.dims()[0];
    let mut ring = KeyQueue::<Flex> {
        keys: queue.inner(),
        videos: vec![-1; k_len],
        ptr: 0,
    };
    ring.enqueue(k.inner(), &[]).unwrap();
    let got = ring.keys.into_data().to_vec::<f32>().unwrap();
    let want = fx.vec("moco.queue_after");
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
    assert_eq!(ring.ptr, 8);
}

#[test]
fn byol_loss_is_twice_lightlys_negative_cosine() {
    let fx = Fx::load();
    let p = fx.leaf("byol.p");
    let loss = negative_cosine_x2(l2_normalize(p.clone()), l2_normalize(fx.t2("byol.z")));
    let grads = loss.backward();
    assert_loss(value(loss), 2.0 * fx.scalar("byol.loss"), "BYOL");
    assert_grad(
        p.grad(&grads).unwrap(),
        &fx.vec("byol.grad_p"),
        2.0,
        "BYOL dp",
    );
}

#[test]
fn swav_matches_lightly_for_two_three_and_four_views() {
    let fx = Fx::load();
    let settings = SwavSettings {
        temperature: 0.1,
        epsilon: 0.05,
        iterations: 3,
        assignment_views: 2,
    };
    for views in [2, 3, 4] {
        let scores: Vec<Tensor<AB, 2>> = (0..views)
            .map(|v| fx.leaf(&format!("swav{views}.scores{v}")))
            .collect();
        let loss = swapped_prediction(&scores, settings, &SingleDevice);
        let grads = loss.backward();
        assert_loss(
            value(loss),
            fx.scalar(&format!("swav{views}.loss")),
            &format!("SwAV, {views} views"),
        );
        for (v, s) in scores.iter().enumerate() {
            assert_grad(
                s.grad(&grads).unwrap(),
                &fx.vec(&format!("swav{views}.grad{v}")),
                1.0,
                &format!("SwAV {views} views, d scores{v}"),
            );
        }
    }
}

#[test]
fn sinkhorn_matches_lightly() {
    let fx = Fx::load();
    let q = sinkhorn(fx.t2("sinkhorn.scores"), 0.05, 3, &SingleDevice);
    let got = q.into_data().to_vec::<f32>().unwrap();
    let want = fx.vec("sinkhorn.q");
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(err < 1e-5, "max |ΔQ| {err}");
}

#[test]
fn momentum_schedule_matches_lightly() {
    let fx = Fx::load();
    let want = fx.vec("schedule.byol");
    let steps = want.len();
    for (s, w) in want.iter().enumerate() {
        // lightly's cosine_schedule divides by max_steps − 1: E = steps − 1 in epochs of one step.
        let got = cosine_momentum(0.996, s as f64, (steps - 1) as f64);
        assert!((got - *w as f64).abs() < 1e-6, "step {s}: {got} vs {w}");
    }
}

#[test]
fn momentum_update_matches_lightly() {
    let fx = Fx::load();
    let dev = Default::default();
    let linear = |w: Tensor<AB, 2>| {
        let mut l = LinearConfig::new(4, 3).init::<AB>(&dev);
        l.weight = Param::from_tensor(w.transpose());
        l
    };
    let online = linear(fx.t2("ema.online_w"));
    let mut ema = MomentumEncoder {
        target: linear(fx.t2("ema.target_w")),
    };
    ema.update(&online, 0.99);
    let got = ema
        .target
        .weight
        .val()
        .transpose()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let want = fx.vec("ema.after_w");
    assert!(got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6));
}
