//! Data parallelism on the CPU: two in-process devices with half the batch each must take the
//! same step as one device with the whole batch, for every method, with SyncBatchNorm on.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use rho_train::{pretrain, pretrain_data_parallel, Recipe, RunOptions};

type AB = Autodiff<Flex>;

/// Burn's random generator is one per process: runs that seed it take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn videos() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rho-dp-{}", std::process::id()));
    rho_data::synthetic::test_videos(&dir, 8, 64, 48, 15, 2.0).unwrap();
    dir
}

fn recipe(kind: &str, optimizer: &str, extra: &str, sync_bn: &str, index: &Path) -> Recipe {
    let text = format!(
        r#"
name = "test"
batch = 4
epochs = 4
output = "unused"
[model]
arch = "slow_r18_tiny"
sync_bn = {sync_bn}
[method]
kind = "{kind}"
{extra}
[data]
index = "{}"
rho = 2
frames = 4
stride = 2
crop = 32
short_side = 40
workers = 2
[optim]
optimizer = "{optimizer}"
base_lr = 0.05
reference_batch = 4
weight_decay = 1e-4
warmup_epochs = 1
warmup_start_lr = 0.01
"#,
        index.display()
    );
    Recipe::parse(&text, "test", &[]).unwrap()
}

/// Every float tensor of a network (parameters and running statistics), in traversal order.
fn values(net: &rho_objectives::SslNetwork<AB>) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl ModuleVisitor<AB> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AB, D>>) {
            self.0.extend(p.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut c = Collect(Vec::new());
    net.visit(&mut c);
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
    let index = videos();
    for (kind, opt, extra, steps) in [
        ("simclr", "lars", "", 2),
        ("byol", "lars", "", 2),
        ("swav", "lars", "prototypes = 10", 2),
        // Queue of 8 at batch 4: two warm-up steps without an optimiser step, then two real ones.
        ("moco", "sgd", "queue_len = 8", 4),
    ] {
        let r = recipe(kind, opt, extra, "\"all\"", &index);
        let initial = single(&r, 0).weights;
        let one = single(&r, steps);
        let two = two_devices(&r, steps);
        assert_eq!(one.losses.len(), steps, "{kind}");
        for (a, b) in one.losses.iter().zip(&two.losses) {
            assert!((a - b).abs() < 1e-4 * a.abs().max(1.0), "{kind}: losses {:?} vs {:?}", one.losses, two.losses);
        }
        let gap = relative_gap(&one, &two, &initial);
        eprintln!("{kind}: relative gap {gap:.2e}, losses {:?} vs {:?}", one.losses, two.losses);
        assert!(gap < 1e-3, "{kind}: weights differ by {gap:.2e} of the step size");
    }
}

/// The control: without SyncBatchNorm each device normalises with its own half-batch, which is
/// a different step; the comparison above would see it.
#[test]
fn per_device_batch_norm_is_not_the_single_device_step() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = videos();
    let r = recipe("simclr", "lars", "", "\"off\"", &index);
    let initial = single(&r, 0).weights;
    let one = single(&r, 2);
    let two = two_devices(&r, 2);
    let gap = relative_gap(&one, &two, &initial);
    eprintln!("per-device BN: relative gap {gap:.2e}");
    assert!(gap > 1e-2, "per-device BN matched the global batch ({gap:.2e})");
}

#[test]
fn runs_that_cannot_split_are_refused_with_the_fix() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = videos();
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
    let r = recipe("simclr", "lars", "", "\"all\"", &index);
    let e = run(&r, 3);
    assert!(e.contains("does not split into 3 devices"), "{e}");
    let r = recipe("simclr", "lars", "", "\"off\"", &index);
    let e = run(&r, 4);
    assert!(e.contains("BatchNorm needs 2"), "{e}");
    let mut r = recipe("simclr", "lars", "", "3", &index);
    r.batch = 8;
    let e = run(&r, 4);
    assert!(e.contains("model.sync_bn = 3"), "{e}");
}
