//! The four methods end to end on a tiny backbone: every ρ runs forward and backward, the loss
//! falls when over-fitting a fixed batch, ρ = 2 is the two-clip loss, and the properties that no
//! fixture covers (order invariance, Sinkhorn marginals).

use burn::backend::{Autodiff, Flex};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::tensor::{Distribution, Tensor};
use rho_model::ResNet3dConfig;
use rho_objectives::*;

type AB = Autodiff<Flex>;

fn config(kind: MethodKind) -> MethodConfig {
    let mut c = MethodConfig::preset(kind);
    c.proj_hidden = 64;
    c.proj_dim = 32;
    c.with_predictor_hidden(64)
        .with_queue_len(64)
        .with_prototypes(20)
}

fn network(cfg: &MethodConfig) -> SslNetwork<AB> {
    let dev = Default::default();
    let backbone = ResNet3dConfig::preset("slow_r18_tiny")
        .unwrap()
        .init::<AB>(&dev);
    cfg.build_network(backbone, &dev)
}

fn clips(views: usize, seed: u64) -> Vec<Tensor<AB, 5>> {
    let dev = Default::default();
    <AB as burn::tensor::backend::Backend>::seed(&dev, seed);
    let base = Tensor::<AB, 5>::random([4, 3, 4, 32, 32], Distribution::Normal(0.0, 1.0), &dev);
    (0..views)
        .map(|_| {
            base.clone() + Tensor::random([4, 3, 4, 32, 32], Distribution::Normal(0.0, 0.3), &dev)
        })
        .collect()
}

const KINDS: [MethodKind; 4] = [
    MethodKind::Moco,
    MethodKind::Byol,
    MethodKind::Simclr,
    MethodKind::Swav,
];

#[test]
fn every_method_steps_for_rho_one_to_four() {
    let ctx = StepContext::at(1.5, 10.0);
    for kind in KINDS {
        let cfg = config(kind);
        let net = network(&cfg);
        let mut method = Method::new(cfg, &net, &Default::default()).unwrap();
        // ρ = 1 is two crops of one clip: two views for the method, like ρ = 2.
        for views in [2, 2, 3, 4] {
            let net = method.prepare(net.clone());
            let out = method
                .step(&net, &clips(views, 7), ctx, &SingleDevice)
                .unwrap();
            let grads = out.loss.backward();
            let g = GradientsParams::from_grads(grads, &net);
            assert!(
                g.len() > 10,
                "{kind:?} ρ-views {views}: only {} gradients",
                g.len()
            );
            let l = out.metrics["loss"];
            assert!(l.is_finite(), "{kind:?}: loss {l}");
            assert!(out.metrics["emb_std"] > 0.0);
        }
        let err = method
            .step(&net, &clips(1, 7), ctx, &SingleDevice)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("≥ 2"), "{err}");
    }
}

#[test]
fn every_method_overfits_a_fixed_batch() {
    let ctx = StepContext::at(2.0, 10.0);
    let batch = clips(2, 11);
    for kind in KINDS {
        let cfg = config(kind).with_queue_len(16);
        let mut net = network(&cfg);
        let mut method = Method::new(cfg, &net, &Default::default()).unwrap();
        // On a fixed batch the MoCo queue would fill with copies of the positives themselves,
        // which makes the loss rise by construction. Over-fit against fixed negatives instead:
        // the keys of 16 other clips, restored before every step.
        let negatives = method.target.as_ref().map(|t| {
            let keys: Vec<_> = clips(4, 99)
                .into_iter()
                .map(|c| t.target.embed(c).detach().inner())
                .collect();
            let keys = Tensor::cat(keys, 0);
            KeyQueue::<Flex> {
                videos: vec![-1; keys.dims()[0]],
                keys,
                ptr: 0,
            }
            .state()
        });
        let mut optim = SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
            ))
            .init::<AB, SslNetwork<AB>>();
        let mut losses = Vec::new();
        for _ in 0..50 {
            net = method.prepare(net);
            if let (MethodKind::Moco, Some(n)) = (kind, &negatives) {
                method.load_queue_state(n, &Default::default()).unwrap();
            }
            let out = method.step(&net, &batch, ctx, &SingleDevice).unwrap();
            losses.push(out.metrics["loss"]);
            let grads = GradientsParams::from_grads(out.loss.backward(), &net);
            net = optim.step(0.05, net, grads);
        }
        let first: f64 = losses[..5].iter().sum::<f64>() / 5.0;
        let last: f64 = losses[45..].iter().sum::<f64>() / 5.0;
        eprintln!("{kind:?}: mean loss of steps 1-5 {first:.4}, of steps 46-50 {last:.4}");
        assert!(
            last < first - 0.05 * first.abs().max(0.1),
            "{kind:?}: loss {first:.4} → {last:.4} ({losses:?})"
        );
    }
}

/// With ρ = 2 and a fresh target (θ_m = θ), ρMoCo and ρBYOL are the symmetric two-clip losses.
#[test]
fn rho_two_is_the_two_clip_loss() {
    let ctx = StepContext::at(0.0, 10.0);
    let x = clips(2, 3);
    for kind in [MethodKind::Moco, MethodKind::Byol] {
        let cfg = config(kind);
        let net = network(&cfg);
        let mut method = Method::new(cfg, &net, &Default::default()).unwrap();
        let queue = method
            .queue
            .as_ref()
            .map(|q| Tensor::<AB, 2>::from_inner(q.keys.clone()));
        let got = method.step(&net, &x, ctx, &SingleDevice).unwrap().metrics["loss"];
        let target = &method.target.as_ref().unwrap().target;
        let k: Vec<_> = x.iter().map(|c| target.embed(c.clone())).collect();
        let want = match kind {
            MethodKind::Moco => {
                let q: Vec<_> = x.iter().map(|c| net.embed(c.clone())).collect();
                let l0 = info_nce_per_positive(
                    q[0].clone(),
                    &[k[1].clone()],
                    queue.clone().unwrap(),
                    0.1,
                    None,
                );
                let l1 =
                    info_nce_per_positive(q[1].clone(), &[k[0].clone()], queue.unwrap(), 0.1, None);
                (l0 + l1).div_scalar(2.0)
            }
            _ => {
                let p: Vec<_> = x
                    .iter()
                    .map(|c| l2_normalize(net.predict(net.project(c.clone()))))
                    .collect();
                (negative_cosine_x2(p[0].clone(), k[1].clone())
                    + negative_cosine_x2(p[1].clone(), k[0].clone()))
                .div_scalar(2.0)
            }
        };
        let want = want.into_data().to_vec::<f32>().unwrap()[0] as f64;
        assert!(
            (got - want).abs() < 1e-4 * want.abs().max(1.0),
            "{kind:?}: {got} vs {want}"
        );
    }
}

fn rand(n: usize, d: usize) -> Tensor<AB, 2> {
    l2_normalize(Tensor::random(
        [n, d],
        Distribution::Normal(0.0, 1.0),
        &Default::default(),
    ))
}

fn v(t: Tensor<AB, 1>) -> f32 {
    t.into_data().to_vec::<f32>().unwrap()[0]
}

#[test]
fn losses_are_invariant_to_clip_order_where_expected() {
    let (q, k1, k2, k3, queue) = (rand(6, 8), rand(6, 8), rand(6, 8), rand(6, 8), rand(20, 8));
    let a = v(info_nce_multi_positive(
        q.clone(),
        &[k1.clone(), k2.clone(), k3.clone()],
        queue.clone(),
        0.1,
        None,
    ));
    let b = v(info_nce_multi_positive(
        q.clone(),
        &[k3.clone(), k1.clone(), k2.clone()],
        queue.clone(),
        0.1,
        None,
    ));
    assert!((a - b).abs() < 1e-5);
    let a = v(info_nce_per_positive(
        q.clone(),
        &[k1.clone(), k2.clone()],
        queue.clone(),
        0.1,
        None,
    ));
    let b = v(info_nce_per_positive(
        q.clone(),
        &[k2.clone(), k1.clone()],
        queue.clone(),
        0.1,
        None,
    ));
    assert!((a - b).abs() < 1e-5);
    // NT-Xent is symmetric in its two views.
    let a = v(nt_xent(k1.clone(), k2.clone(), 0.1, &SingleDevice));
    let b = v(nt_xent(k2.clone(), k1.clone(), 0.1, &SingleDevice));
    assert!((a - b).abs() < 1e-5);
    // SwAV: swapping the two assignment views, or permuting the others, changes nothing.
    let protos = rand(10, 8);
    let s: Vec<_> = [q, k1, k2, k3]
        .into_iter()
        .map(|z| z.matmul(protos.clone().transpose()))
        .collect();
    let settings = SwavSettings {
        temperature: 0.1,
        epsilon: 0.05,
        iterations: 3,
        assignment_views: 2,
    };
    let a = v(swapped_prediction(&s, settings, &SingleDevice));
    let b = v(swapped_prediction(
        &[s[1].clone(), s[0].clone(), s[3].clone(), s[2].clone()],
        settings,
        &SingleDevice,
    ));
    assert!((a - b).abs() < 1e-5);
}

#[test]
fn sinkhorn_marginals() {
    let (b, k) = (12, 5);
    let scores = rand(b, 8).matmul(rand(k, 8).transpose());
    // Each sample's codes sum to 1 after any number of iterations …
    let q = sinkhorn(scores.clone(), 0.05, 3, &SingleDevice);
    let cols = q.clone().sum_dim(1).into_data().to_vec::<f32>().unwrap();
    assert!(cols.iter().all(|c| (c - 1.0).abs() < 1e-5), "{cols:?}");
    // … and with enough iterations the prototypes share the batch equally: rows sum to B/K
    // (1/K before the final scaling by B).
    let q = sinkhorn(scores, 0.05, 200, &SingleDevice);
    let rows = q.sum_dim(0).into_data().to_vec::<f32>().unwrap();
    assert!(
        rows.iter().all(|r| (r - b as f32 / k as f32).abs() < 1e-3),
        "{rows:?}"
    );
}

/// The momentum update reaches every parameter of the nested network (backbone stages and
/// blocks, projector, predictor): θ_t ← m·θ_t + (1 − m)·θ for each, and the running
/// statistics are left alone.
#[test]
fn momentum_update_moves_every_parameter_of_the_network() {
    use burn::module::{Module, ModuleVisitor, Param};
    struct Collect(Vec<Vec<f32>>);
    impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0
                .push(p.val().into_data().convert::<f32>().to_vec().unwrap());
        }
    }
    let params = |m: &SslNetwork<AB>| {
        let mut c = Collect(Vec::new());
        m.visit(&mut c);
        c.0
    };
    let cfg = config(MethodKind::Byol);
    let online = network(&cfg);
    let mut ema = MomentumEncoder::new(&online);
    // The online network after a "step": every parameter + 1.
    struct AddOne;
    impl<B: burn::tensor::backend::Backend> burn::module::ModuleMapper<B> for AddOne {
        fn map_float<const D: usize>(&mut self, p: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let (id, t, mapper) = p.consume();
            Param::from_mapped_value(id, t.add_scalar(1.0), mapper)
        }
    }
    let moved = online.clone().map(&mut AddOne);
    let before = params(&ema.target);
    ema.update(&moved, 0.5);
    let after = params(&ema.target);
    let now = params(&moved);
    let mut checked = 0;
    for ((b, a), o) in before.iter().zip(&after).zip(&now) {
        if a == b {
            continue; // not updated: must be a running statistic (checked by the count below)
        }
        for ((b, a), o) in b.iter().zip(a).zip(o) {
            assert!((a - (0.5 * b + 0.5 * o)).abs() < 1e-5, "{a} vs {b}, {o}");
        }
        checked += 1;
    }
    let bns = online.backbone.batch_norms().len() + 4; // + projector/predictor BNs
    assert!(
        checked + 2 * bns >= before.len() && checked > 30,
        "only {checked} of {} tensors moved",
        before.len()
    );
}

/// Own-video exclusion: each row's loss with its own video's queue entries masked equals that
/// row's loss against the queue without those entries.
#[test]
fn masked_queue_entries_are_no_negatives_of_their_row() {
    use burn::tensor::{Bool, TensorData};
    let (n, d, k) = (3, 8, 10);
    let (q, pos, queue) = (rand(n, d), rand(n, d), rand(k, d));
    // Row r's video owns queue entries r, r + 3 and r + 6 (entry 9 belongs to no row).
    let owner = |e: usize| (e < 9).then_some(e % 3);
    let mask: Vec<bool> = (0..n)
        .flat_map(|r| (0..k).map(move |e| owner(e) == Some(r)))
        .collect();
    let mask = Tensor::<AB, 2, Bool>::from_data(TensorData::new(mask, [n, k]), &Default::default());
    let masked = v(info_nce_per_positive(
        q.clone(),
        &[pos.clone()],
        queue.clone(),
        0.1,
        Some(mask),
    ));
    let rows: Vec<f32> = (0..n)
        .map(|r| {
            let kept: Vec<usize> = (0..k).filter(|&e| owner(e) != Some(r)).collect();
            let idx = Tensor::<AB, 1, burn::tensor::Int>::from_data(
                TensorData::new(
                    kept.iter().map(|&e| e as i64).collect::<Vec<_>>(),
                    [kept.len()],
                ),
                &Default::default(),
            );
            let row = |t: &Tensor<AB, 2>| t.clone().slice([r..r + 1]);
            v(info_nce_per_positive(
                row(&q),
                &[row(&pos)],
                queue.clone().select(0, idx),
                0.1,
                None,
            ))
        })
        .collect();
    let want = rows.iter().sum::<f32>() / n as f32;
    assert!((masked - want).abs() < 1e-5, "{masked} vs {want}");
    let unmasked = v(info_nce_per_positive(q, &[pos], queue, 0.1, None));
    assert!((masked - unmasked).abs() > 1e-3, "the mask changed nothing");
}

/// The MoCo step leaves out the queued keys of the batch's own videos (once the queue holds
/// them), and only then.
#[test]
fn moco_leaves_the_own_videos_keys_out_of_the_negatives() {
    let x = clips(2, 5);
    let loss = |exclude: bool, queued: &[i64], batch: &[u64]| {
        let cfg = config(MethodKind::Moco).with_exclude_own_video(exclude);
        let dev = Default::default();
        <AB as burn::tensor::backend::Backend>::seed(&dev, 1);
        let net = network(&cfg);
        let mut m = Method::new(cfg, &net, &dev).unwrap();
        let q = m.queue.as_mut().unwrap();
        // The queue's keys are the batch's own embeddings (hard negatives), tagged `queued`.
        let own = net.embed(x[0].clone()).detach().inner();
        for _ in 0..16 {
            q.enqueue(own.clone(), queued).unwrap();
        }
        let ctx = StepContext {
            videos: Some(batch),
            ..StepContext::at(0.0, 10.0)
        };
        m.step(&net, &x, ctx, &SingleDevice).unwrap().metrics["loss"]
    };
    let batch = [0, 1, 2, 3];
    let with_own = loss(false, &[0, 1, 2, 3], &batch);
    let excluded = loss(true, &[0, 1, 2, 3], &batch);
    let others = loss(true, &[4, 5, 6, 7], &batch);
    assert!(excluded < with_own - 0.1, "{excluded} vs {with_own}");
    // Another video's keys are negatives whatever the setting.
    assert!((others - with_own).abs() < 1e-5, "{others} vs {with_own}");
}

/// Shuffle-BN on one device: one split is the plain key encoder; two splits give unit keys
/// whose BatchNorm statistics differ, in an order fixed by (seed, step, clip).
#[test]
fn shuffle_bn_sub_batches_change_only_the_key_statistics() {
    let cfg = config(MethodKind::Moco);
    let net = network(&cfg);
    let x = clips(1, 9).remove(0);
    let plain = l2_normalize(net.project(x.clone())).detach();
    let vals = |t: Tensor<AB, 2>| t.into_data().to_vec::<f32>().unwrap();
    let one = shuffle_bn::keys(&net, &x, 1, (0, 0, 0), &SingleDevice).unwrap();
    let gap = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    };
    assert!(gap(&vals(one), &vals(plain.clone())) < 1e-6);
    let two = vals(shuffle_bn::keys(&net, &x, 2, (0, 3, 1), &SingleDevice).unwrap());
    let again = vals(shuffle_bn::keys(&net, &x, 2, (0, 3, 1), &SingleDevice).unwrap());
    assert_eq!(two, again, "the permutation depends on the salt only");
    assert!(
        gap(&two, &vals(plain)) > 1e-3,
        "sub-batch statistics changed nothing"
    );
    for row in two.chunks(32) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    // The keys are the plain key encoder run on each sub-batch of the permuted batch alone.
    let perm = shuffle_bn::permutation(4, (0, 3, 1));
    let mut by_hand = vec![0f32; 4 * 32];
    for half in perm.chunks(2) {
        let idx = Tensor::<AB, 1, burn::tensor::Int>::from_data(
            burn::tensor::TensorData::new(half.iter().map(|&i| i as i64).collect::<Vec<_>>(), [2]),
            &Default::default(),
        );
        let k = vals(l2_normalize(net.project(x.clone().select(0, idx))));
        for (row, &i) in half.iter().enumerate() {
            by_hand[i * 32..(i + 1) * 32].copy_from_slice(&k[row * 32..(row + 1) * 32]);
        }
    }
    assert!(gap(&two, &by_hand) < 1e-5, "{}", gap(&two, &by_hand));
    let p = shuffle_bn::permutation(8, (0, 3, 1));
    let mut sorted = p.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..8).collect::<Vec<_>>());
    assert_ne!(p, shuffle_bn::permutation(8, (0, 4, 1)));
    assert!(
        shuffle_bn::keys(&net, &x, 3, (0, 0, 0), &SingleDevice).is_err(),
        "4 rows into 3 sub-batches of < 2"
    );
}

/// θ_m = θ at iteration 0 for every tensor, heads included, for both head initialisations.
#[test]
fn the_momentum_target_starts_as_an_exact_copy_of_the_online_network() {
    use burn::module::{Module, ModuleVisitor, Param};
    struct Collect(Vec<Vec<f32>>);
    impl<B: burn::tensor::backend::Backend> ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            self.0
                .push(p.val().into_data().convert::<f32>().to_vec().unwrap());
        }
    }
    for init in [HeadInit::C2Xavier, HeadInit::Pytorch] {
        for kind in [MethodKind::Byol, MethodKind::Moco] {
            let mut cfg = config(kind);
            cfg.head_init = init;
            let online = network(&cfg);
            let method = Method::new(cfg, &online, &Default::default()).unwrap();
            let (mut a, mut b) = (Collect(Vec::new()), Collect(Vec::new()));
            online.visit(&mut a);
            method.target.as_ref().unwrap().target.visit(&mut b);
            assert_eq!(a.0.len(), b.0.len());
            assert!(a.0 == b.0, "{kind:?} {init:?}: the target is not a copy");
        }
    }
}
