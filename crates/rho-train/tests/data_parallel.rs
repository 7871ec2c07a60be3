//! Data parallelism on the CPU: two in-process devices with half the batch each must take the
//! same step as one device with the whole batch, for every method, with SyncBatchNorm on.

mod common;

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use rho_train::recipe::SyncBn;
use rho_train::{pretrain, pretrain_data_parallel, Recipe, RunOptions};

type AB = Autodiff<Flex>;

/// Burn's random generator is one per process: runs that seed it take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The common tiny recipe with SyncBN `sync_bn` and a warm-up from 0.01.
fn recipe(kind: &str, optimizer: &str, extra: &str, sync_bn: SyncBn, index: &Path) -> Recipe {
    let mut r = common::recipe(kind, optimizer, extra, index);
    r.model.sync_bn = sync_bn;
    r.optim.warmup_start_lr = 0.01;
    r
}

/// Every float tensor of a network (parameters and running statistics, with their pending
/// per-thread updates folded in, as saving does), in traversal order.
fn values(net: &rho_objectives::SslNetwork<AB>) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor<Flex> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<Flex, D>>) {
            self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    net.valid().visit(&mut c);
    c.0
}

struct Run {
    losses: Vec<f64>,
    weights: Vec<f32>,
}

fn single(r: &Recipe, steps: usize) -> Run {
    let mut losses = Vec::new();
    let net = pretrain::<AB>(r, &Default::default(), Some(steps), |l| {
        losses.push(l.metrics["loss"])
    })
    .unwrap();
    Run {
        losses,
        weights: values(&net),
    }
}

fn two_devices(r: &Recipe, steps: usize) -> Run {
    let mut losses = Vec::new();
    let opts = RunOptions {
        max_steps: Some(steps),
        ..Default::default()
    };
    let dev = Default::default();
    let net = pretrain_data_parallel::<AB>(
        r,
        &[dev, dev],
        opts,
        300.0,
        |l| {
            assert_eq!(l.clips, 4 * 2, "the log counts the global batch's clips");
            losses.push(l.metrics["loss"])
        },
        |_, _| Ok(()),
    )
    .unwrap();
    Run {
        losses,
        weights: values(&net),
    }
}

/// The largest difference between the runs' weights, relative to the largest weight change
/// the steps made (so "equal" means: far closer than one step moves anything).
fn relative_gap(a: &Run, b: &Run, initial: &[f32]) -> f64 {
    let gap = a
        .weights
        .iter()
        .zip(&b.weights)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max);
    let moved = a
        .weights
        .iter()
        .zip(initial)
        .map(|(x, y)| (x - y).abs() as f64)
        .fold(0.0, f64::max);
    gap / moved
}

#[test]
fn two_devices_with_half_batches_take_the_single_device_step_for_every_method() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = common::videos("dp");
    for (kind, opt, extra, steps) in [
        ("simclr", "lars", "", 2),
        ("byol", "lars", "", 2),
        ("swav", "lars", "prototypes = 10", 2),
        // Queue of 8 at batch 4 × 2 clips: one warm-up step without an optimiser step, then
        // three real ones.
        ("moco", "sgd", "queue_len = 8", 4),
    ] {
        let r = recipe(kind, opt, extra, SyncBn::All, &index);
        let initial = single(&r, 0).weights;
        let one = single(&r, steps);
        let two = two_devices(&r, steps);
        assert_eq!(one.losses.len(), steps, "{kind}");
        for (a, b) in one.losses.iter().zip(&two.losses) {
            assert!(
                (a - b).abs() < 1e-4 * a.abs().max(1.0),
                "{kind}: losses {:?} vs {:?}",
                one.losses,
                two.losses
            );
        }
        let gap = relative_gap(&one, &two, &initial);
        eprintln!(
            "{kind}: relative gap {gap:.2e}, losses {:?} vs {:?}",
            one.losses, two.losses
        );
        assert!(
            gap < 1e-3,
            "{kind}: weights differ by {gap:.2e} of the step size"
        );
    }
}

/// The control: without SyncBatchNorm each device normalises with its own half-batch, which is
/// a different step; the comparison above would see it.
#[test]
fn per_device_batch_norm_is_not_the_single_device_step() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = common::videos("dp");
    let r = recipe("simclr", "lars", "", SyncBn::Off, &index);
    let initial = single(&r, 0).weights;
    let one = single(&r, 2);
    let two = two_devices(&r, 2);
    let gap = relative_gap(&one, &two, &initial);
    eprintln!("per-device BN: relative gap {gap:.2e}");
    assert!(
        gap > 1e-2,
        "per-device BN matched the global batch ({gap:.2e})"
    );
}

#[test]
fn runs_that_cannot_split_are_refused_with_the_fix() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = common::videos("dp");
    let dev = Default::default();
    let run = |r: &Recipe, n: usize| {
        pretrain_data_parallel::<AB>(
            r,
            &vec![dev; n],
            RunOptions {
                max_steps: Some(1),
                ..Default::default()
            },
            60.0,
            |_| {},
            |_, _| Ok(()),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let r = recipe("simclr", "lars", "", SyncBn::All, &index);
    let e = run(&r, 3);
    assert!(e.contains("does not split into 3 devices"), "{e}");
    let r = recipe("simclr", "lars", "", SyncBn::Off, &index);
    let e = run(&r, 4);
    assert!(e.contains("BatchNorm needs 2"), "{e}");
    let mut r = recipe("simclr", "lars", "", SyncBn::Group(3), &index);
    r.batch = 8;
    let e = run(&r, 4);
    assert!(e.contains("model.sync_bn = 3"), "{e}");
}

/// Runs `f(rank, group)` on two in-process ranks and returns their results in rank order.
fn on_two_ranks<R: Send + 'static>(
    sync_bn: usize,
    f: impl Fn(usize, &std::sync::Arc<rho_train::distributed::DeviceGroup<AB>>) -> R
        + Send
        + Sync
        + 'static,
) -> Vec<R> {
    use rho_train::distributed::{DeviceGroup, LocalTransport, Watch};
    use std::sync::Arc;
    burn::collective::reset_collective::<Flex>();
    let watch = Watch::new(2);
    let f = Arc::new(f);
    let handles: Vec<_> = (0..2)
        .map(|rank| {
            let (watch, f) = (watch.clone(), f.clone());
            std::thread::spawn(move || {
                let t =
                    LocalTransport::<Flex>::register(rank, 2, &Default::default(), watch).unwrap();
                let t = Arc::new(t);
                let group = Arc::new(DeviceGroup::<AB>::new(t.clone(), sync_bn));
                let r = f(rank, &group);
                t.finish();
                r
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    let gap = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let scale = a.iter().map(|x| x.abs()).fold(0f32, f32::max);
    eprintln!("{what}: gap {gap:.3e} at scale {scale:.3e}");
    assert!(
        gap <= tol * scale.max(1e-6),
        "{what}: gap {gap:.3e} at scale {scale:.3e}"
    );
}

/// SimCLR's loss over a gathered batch: the gradient each rank gets for its rows (through the
/// differentiable gather) is the single-device gradient of the whole batch's loss.
#[test]
fn gathered_nt_xent_gradients_equal_the_single_device_ones() {
    use burn::tensor::{Distribution, TensorData};
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Default::default();
    let (n, d) = (4, 8);
    let z0 = Tensor::<AB, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
    let z1 = Tensor::<AB, 2>::random([n, d], Distribution::Normal(0.0, 1.0), &dev);
    let (v0, v1) = (z0.to_data(), z1.to_data());
    let single = {
        let (a, b) = (z0.require_grad(), z1.require_grad());
        let loss = rho_objectives::ntxent::nt_xent(
            a.clone(),
            b.clone(),
            0.1,
            &rho_objectives::SingleDevice,
        );
        let g = loss.clone().backward();
        let ga = a.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
        let gb = b.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
        (loss.into_scalar(), ga, gb)
    };
    let parts = on_two_ranks(1, move |rank, group| {
        let dev = Default::default();
        let rows = |v: &TensorData| {
            let all = v.to_vec::<f32>().unwrap();
            let h = n / 2;
            Tensor::<AB, 2>::from_data(
                TensorData::new(all[rank * h * d..(rank + 1) * h * d].to_vec(), [h, d]),
                &dev,
            )
            .require_grad()
        };
        let (a, b) = (rows(&v0), rows(&v1));
        let loss = rho_objectives::ntxent::nt_xent(a.clone(), b.clone(), 0.1, group.as_ref());
        let g = loss.clone().backward();
        let ga = a.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
        let gb = b.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap();
        (loss.into_scalar(), ga, gb)
    });
    let loss = (parts[0].0 + parts[1].0) / 2.0;
    assert!((loss - single.0).abs() < 1e-5, "{loss} vs {}", single.0);
    // Each rank's gradient is of the sum of the ranks' losses: halve it for the mean.
    let ga: Vec<f32> = parts
        .iter()
        .flat_map(|p| p.1.iter().map(|x| x / 2.0))
        .collect();
    let gb: Vec<f32> = parts
        .iter()
        .flat_map(|p| p.2.iter().map(|x| x / 2.0))
        .collect();
    assert_close(&single.1, &ga, 1e-4, "d/dz0");
    assert_close(&single.2, &gb, 1e-4, "d/dz1");
}

/// Output, input gradient, γ gradient and running variance of BatchNorm `bn` that gave `y`
/// for `x`, under the loss Σ y·w.
type Outputs = (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>);
fn bn_outputs(
    bn: &rho_model::BatchNorm3d<AB>,
    x: &Tensor<AB, 3>,
    y: Tensor<AB, 3>,
    w: Tensor<AB, 3>,
) -> Outputs {
    let v = |t: Tensor<AB, 1>| t.into_data().to_vec::<f32>().unwrap();
    let g = (y.clone() * w).sum().backward();
    (
        y.into_data().to_vec::<f32>().unwrap(),
        x.grad(&g).unwrap().into_data().to_vec::<f32>().unwrap(),
        v(Tensor::from_inner(bn.gamma.val().grad(&g).unwrap())),
        v(bn.running_var.value_sync()),
    )
}

/// SyncBatchNorm on two ranks is BatchNorm over the concatenated batch: outputs, input
/// gradients, γ/β gradients (summed over the ranks) and running statistics.
#[test]
fn sync_batch_norm_on_two_ranks_is_batch_norm_over_the_whole_batch() {
    use burn::tensor::{Distribution, TensorData};
    use rho_model::BatchNorm3d;
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Default::default();
    let (n, c, s) = (4, 3, 10);
    let x = Tensor::<AB, 3>::random([n, c, s], Distribution::Normal(1.0, 2.0), &dev);
    let w = Tensor::<AB, 3>::random([n, c, s], Distribution::Normal(0.0, 1.0), &dev);
    let (xv, wv) = (x.to_data(), w.to_data());
    let bn = BatchNorm3d::<AB>::new(c, 1e-5, 0.1, &dev);
    let x = x.require_grad();
    let single = bn_outputs(&bn, &x, bn.forward(x.clone()), w);
    let parts = on_two_ranks(2, move |rank, group| {
        let dev = Default::default();
        let h = n / 2;
        let rows = |v: &TensorData| {
            let all = v.to_vec::<f32>().unwrap();
            Tensor::<AB, 3>::from_data(
                TensorData::new(
                    all[rank * h * c * s..(rank + 1) * h * c * s].to_vec(),
                    [h, c, s],
                ),
                &dev,
            )
        };
        let bn = BatchNorm3d::<AB>::new(c, 1e-5, 0.1, &dev);
        let x = rows(&xv).require_grad();
        let sync: std::sync::Arc<dyn rho_model::BatchStatsSync> = group.clone();
        let y = rho_model::with_batch_stats_sync(sync, || bn.forward(x.clone()));
        bn_outputs(&bn, &x, y, rows(&wv))
    });
    let cat = |f: fn(&Outputs) -> &Vec<f32>| -> Vec<f32> {
        parts.iter().flat_map(|p| f(p).clone()).collect()
    };
    assert_close(&single.0, &cat(|p| &p.0), 1e-5, "output");
    // The loss of the sum of ranks is the single-device loss: input gradients match as they are.
    assert_close(&single.1, &cat(|p| &p.1), 1e-4, "d/dx");
    let gamma: Vec<f32> = parts[0]
        .2
        .iter()
        .zip(&parts[1].2)
        .map(|(a, b)| a + b)
        .collect();
    assert_close(&single.2, &gamma, 1e-4, "d/dγ");
    assert_close(&single.3, &parts[0].3, 1e-5, "running variance (rank 0)");
    assert_close(&single.3, &parts[1].3, 1e-5, "running variance (rank 1)");
}

/// A checkpoint written by a two-device run resumes on one device, continuing the same run.
#[test]
fn a_data_parallel_checkpoint_resumes_on_one_device() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = common::videos("dp");
    let mut r = recipe("byol", "lars", "", SyncBn::All, &index);
    r.output = std::env::temp_dir().join(format!("rho-dp-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&r.output);
    let initial = single(&r, 0).weights;
    let straight = single(&r, 4);
    let dev = Default::default();
    pretrain_data_parallel::<AB>(
        &r,
        &[dev, dev],
        RunOptions {
            max_steps: Some(2),
            checkpoint_every: Some(2),
            keep: 1,
            ..Default::default()
        },
        300.0,
        |_| {},
        |_, _| Ok(()),
    )
    .unwrap();
    let ck = rho_train::checkpoint::list_checkpoints(&r.output)
        .pop()
        .expect("rank 0 wrote a checkpoint");
    let net = rho_train::pretrain_with::<AB>(
        &r,
        &dev,
        RunOptions {
            max_steps: Some(4),
            resume: Some(ck),
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    let resumed = Run {
        losses: Vec::new(),
        weights: values(&net),
    };
    let gap = relative_gap(&straight, &resumed, &initial);
    assert!(
        gap < 1e-3,
        "resumed run differs by {gap:.2e} of the step size"
    );
    let _ = std::fs::remove_dir_all(&r.output);
}

/// Ranks that would continue from different checkpoints (or read different lists) are stopped
/// before training, with what differs and the fix.
#[test]
fn ranks_that_resume_from_different_points_are_refused() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let errors = on_two_ranks(1, |rank, group| {
        let facts = [if rank == 0 { 500 } else { 0 }, 240_000, u64::MAX - 7];
        rho_train::distributed::check_agreement(
            group.transport().as_ref(),
            &Default::default(),
            &[
                "resumed step",
                "videos in the index",
                "hash of the video paths",
            ],
            &facts,
            "use a shared filesystem",
        )
        .err()
        .map(|e| e.to_string())
    });
    let e = errors[1].clone().expect("rank 1 disagrees with rank 0");
    assert!(e.contains("resumed step: rank 0 500 vs rank 1 0"), "{e}");
    assert!(
        !e.contains("videos in the index") && e.contains("shared filesystem"),
        "{e}"
    );
    // Agreeing ranks (64-bit values included) pass.
    let ok = on_two_ranks(1, |_, group| {
        rho_train::distributed::check_agreement(
            group.transport().as_ref(),
            &Default::default(),
            &["hash"],
            &[u64::MAX - 7],
            "",
        )
        .is_ok()
    });
    assert_eq!(ok, [true, true]);
}

/// Shuffle-BN across two ranks (each encodes a random half of the gathered key batch, and the
/// keys go back to their rows) equals the single-device form with two sub-batches of the same
/// permutation; plain per-rank key encoding is different.
#[test]
fn shuffle_bn_across_ranks_equals_the_single_device_split() {
    use burn::tensor::{Distribution, TensorData};
    use rho_objectives::{l2_normalize, shuffle_bn, MethodConfig, MethodKind, SingleDevice};
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = Default::default();
    <AB as burn::tensor::backend::Backend>::seed(&dev, 3);
    let mut cfg = MethodConfig::preset(MethodKind::Moco);
    cfg.proj_hidden = 32;
    cfg.proj_dim = 16;
    let backbone = rho_model::ResNet3dConfig::preset("slow_r18_tiny")
        .unwrap()
        .init::<AB>(&dev);
    let net = cfg.build_network(backbone, &dev);
    let (n, dims) = (4, [3, 2, 32, 32]);
    let x = Tensor::<AB, 5>::random([2 * n, 3, 2, 32, 32], Distribution::Normal(0.0, 1.0), &dev);
    // (7, 0, 1) permutes 0..8 to [6, 0, 7, 1 | 5, 2, 4, 3]: each rank's half mixes both shards.
    let salt = (7, 0, 1);
    assert_eq!(shuffle_bn::permutation(8, salt), [6, 0, 7, 1, 5, 2, 4, 3]);
    let single = shuffle_bn::keys(&net, &x, 2, salt, &SingleDevice)
        .unwrap()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let data = x.to_data();
    let per: usize = dims.iter().product();
    let shards: Vec<TensorData> = (0..2)
        .map(|r| {
            let all = data.to_vec::<f32>().unwrap();
            TensorData::new(
                all[r * n * per..(r + 1) * n * per].to_vec(),
                [n, 3, 2, 32, 32],
            )
        })
        .collect();
    let (net2, shards2) = (net.clone(), shards.clone());
    let ranks = on_two_ranks(1, move |rank, group| {
        let x = Tensor::<AB, 5>::from_data(shards2[rank].clone(), &Default::default());
        let k = shuffle_bn::keys(&net2, &x, 2, salt, group.as_ref()).unwrap();
        k.into_data().to_vec::<f32>().unwrap()
    });
    let dp: Vec<f32> = ranks.concat();
    assert_close(
        &single,
        &dp,
        1e-5,
        "shuffle-BN keys, 2 ranks vs 2 sub-batches",
    );
    let plain: Vec<f32> = shards
        .iter()
        .flat_map(|s| {
            let x = Tensor::<AB, 5>::from_data(s.clone(), &Default::default());
            l2_normalize(net.project(x))
                .into_data()
                .to_vec::<f32>()
                .unwrap()
        })
        .collect();
    let gap = single
        .iter()
        .zip(&plain)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(gap > 1e-3, "shuffling changed nothing ({gap:.2e})");
}
