//! The loop end to end on generated videos: every method trains a few steps on the CPU.

use burn::backend::{Autodiff, Flex};
mod common;

use common::recipe;
use rho_train::pretrain;

type AB = Autodiff<Flex>;

/// Burn's random generator is one per process: runs that seed it must not interleave, or their
/// initial weights differ. The tests of this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn every_method_trains_on_generated_videos() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = common::videos("engine");
    let dev = Default::default();
    for (kind, opt, extra) in [
        ("byol", "lars", ""),
        ("moco", "sgd", "queue_len = 8"),
        ("simclr", "lars", ""),
        ("swav", "lars", "prototypes = 10"),
    ] {
        let r = recipe(kind, opt, extra, &index);
        let mut logs = Vec::new();
        let net = pretrain::<AB>(&r, &dev, Some(4), |l| logs.push(l.clone()))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(logs.len(), 4, "{kind}");
        assert!(
            logs.iter().all(|l| l.metrics["loss"].is_finite()),
            "{kind}: {logs:?}"
        );
        // MoCo's queue (8) takes ⌈8 / (4 videos × 2 clips)⌉ = 1 step to fill; that step only
        // fills it. The schedules count optimiser steps: the first real step is at epoch 0 and
        // runs at the warm-up's starting rate.
        let warmup = if kind == "moco" { 1 } else { 0 };
        let skipped: Vec<bool> = logs.iter().map(|l| l.skipped).collect();
        let want: Vec<bool> = (0..4).map(|i| i < warmup).collect();
        assert_eq!(skipped, want, "{kind}");
        assert_eq!(logs[warmup].epoch, 0.0, "{kind}");
        assert!(
            (logs[warmup].lr - r.schedule().lr(0.0)).abs() < 1e-15,
            "{kind}"
        );
        // The epoch advances by 1/iterations per optimiser step (8 videos / batch 4 = 2).
        let e = (3 - warmup) as f64 / 2.0;
        assert!(
            (logs[3].epoch - e).abs() < 1e-9,
            "{kind}: {}",
            logs[3].epoch
        );
        assert!(net.backbone.feature_dim() > 0);
    }
}

/// Bytes of every tensor of a network, in traversal order.
fn weights(net: &rho_objectives::SslNetwork<AB>) -> Vec<u8> {
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::Tensor;
    struct Collect(Vec<u8>);
    impl ModuleVisitor<AB> for Collect {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<AB, D>>) {
            self.0.extend(
                p.val()
                    .into_data()
                    .to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .flat_map(|v| v.to_le_bytes()),
            );
        }
    }
    let mut c = Collect(Vec::new());
    net.visit(&mut c);
    c.0
}

/// N steps straight equal N/2 steps, a checkpoint, a fresh process state, and N/2 more: to the bit.
#[test]
fn resume_is_bitwise_identical() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use rho_train::{pretrain_with, RunOptions};
    let index = common::videos("engine");
    let dev = Default::default();
    for (kind, opt, extra) in [("byol", "lars", ""), ("moco", "sgd", "queue_len = 8")] {
        let out = std::env::temp_dir().join(format!("rho-resume-{}-{kind}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut r = recipe(kind, opt, extra, &index);
        r.output = out.clone();
        let straight = pretrain_with::<AB>(
            &r,
            &dev,
            RunOptions {
                max_steps: Some(6),
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
        let _first = pretrain_with::<AB>(
            &r,
            &dev,
            RunOptions {
                max_steps: Some(3),
                checkpoint_every: Some(3),
                keep: 2,
                ..Default::default()
            },
            |_| {},
        )
        .unwrap();
        let ck = out.join("ckpt_00000003.rho");
        assert!(ck.exists());
        let mut steps = Vec::new();
        let resumed = pretrain_with::<AB>(
            &r,
            &dev,
            RunOptions {
                max_steps: Some(6),
                resume: Some(ck),
                ..Default::default()
            },
            |l| steps.push(l.step),
        )
        .unwrap();
        assert_eq!(steps, [3, 4, 5], "{kind}");
        assert!(
            weights(&straight) == weights(&resumed),
            "{kind}: resumed weights differ from the uninterrupted run"
        );
    }
}

#[test]
fn corrupt_or_truncated_checkpoints_are_refused_with_their_path() {
    use rho_train::checkpoint::{Checkpoint, CheckpointMeta};
    let p = std::env::temp_dir().join(format!("rho-ckpt-{}.rho", std::process::id()));
    let meta = CheckpointMeta {
        step: 7,
        position: Default::default(),
        recipe_name: "t".into(),
        recipe: String::new(),
        loss_scale: None,
    };
    let blobs = [
        ("online", 100, 1u8),
        ("optim.bn", 10, 2),
        ("optim.rest", 10, 3),
    ]
    .map(|(name, n, v)| (name.to_string(), vec![v; n]));
    let ck = Checkpoint {
        meta,
        blobs: blobs.into_iter().collect(),
    };
    ck.write(&p).unwrap();
    let back = Checkpoint::read(&p).unwrap();
    assert_eq!(
        (back.meta.step, back.blob("online", &p).unwrap().len()),
        (7, 100)
    );
    assert_eq!(Checkpoint::read_meta(&p).unwrap(), back.meta);
    // One flipped bit in the header (`"step":7` → `"step":6`) is caught, not resumed from.
    let clean = std::fs::read(&p).unwrap();
    let at = clean.windows(8).position(|w| w == b"\"step\":7").unwrap() + 7;
    let mut bytes = clean.clone();
    bytes[at] ^= 0x01;
    std::fs::write(&p, &bytes).unwrap();
    let e = Checkpoint::read(&p).unwrap_err().to_string();
    assert!(e.contains("rho-ckpt") && e.contains("checksum"), "{e}");
    std::fs::write(&p, &clean).unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 12] ^= 0xff; // inside the last blob
    std::fs::write(&p, &bytes).unwrap();
    let e = Checkpoint::read(&p).unwrap_err().to_string();
    assert!(e.contains("rho-ckpt") && e.contains("checksum"), "{e}");
    std::fs::write(&p, &bytes[..n / 2]).unwrap();
    let e = Checkpoint::read(&p).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    std::fs::write(&p, b"garbage").unwrap();
    assert!(Checkpoint::read(&p)
        .unwrap_err()
        .to_string()
        .contains("not a rho checkpoint"));
}

#[test]
fn runs_that_cannot_work_are_refused_before_training() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = common::videos("engine");
    let dev = Default::default();
    // Clips of 16×8 need 64 frames of these 15-fps videos; they have 30.
    let mut r = recipe("byol", "lars", "", &index);
    r.data.frames = 16;
    r.data.stride = 8;
    let e = pretrain::<AB>(&r, &dev, Some(1), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("spans") && e.contains("frames"), "{e}");
    // A list naming a file that does not exist.
    let list = index.join("list.txt");
    std::fs::write(
        &list,
        format!(
            "{} 0\n{} 1\n",
            index.join("v0.mp4").display(),
            index.join("gone.mp4").display()
        ),
    )
    .unwrap();
    let mut r = recipe("byol", "lars", "", &index);
    r.data.index = list;
    r.data.format = rho_train::dataset::IndexFormat::List;
    let e = pretrain::<AB>(&r, &dev, Some(1), |_| {})
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("1 of 2 videos") && e.contains("gone.mp4") && e.contains("rho data check"),
        "{e}"
    );
}

#[test]
fn gradient_accumulation_trains_the_same_global_batch() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = common::videos("engine");
    let dev = Default::default();
    for (kind, opt, extra) in [("byol", "lars", ""), ("moco", "sgd", "queue_len = 8")] {
        let mut r = recipe(kind, opt, extra, &index);
        r.optim.accumulation = 2; // 4 videos per step as 2 micro-batches of 2
        let mut logs = Vec::new();
        pretrain::<AB>(&r, &dev, Some(3), |l| logs.push(l.clone()))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(logs.len(), 3);
        assert!(logs
            .iter()
            .all(|l| l.metrics["loss"].is_finite() && l.clips == 8));
    }
    // Micro-batches of one video would make BatchNorm meaningless: refused.
    let mut r = recipe("byol", "lars", "", &index);
    r.optim.accumulation = 4;
    assert!(r
        .validate()
        .unwrap_err()
        .contains("micro-batches of at least 2"));
}

#[test]
fn a_step_that_cannot_fit_in_memory_is_refused_before_training() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let index = common::videos("engine");
    let mut r = recipe("byol", "lars", "", &index);
    r.output = std::env::temp_dir().join(format!("rho-oom-{}", std::process::id()));
    let est = rho_train::memory::estimate(&r).unwrap();
    let e = rho_train::pretrain_with::<AB>(
        &r,
        &Default::default(),
        rho_train::RunOptions {
            max_steps: Some(1),
            memory_limit: Some(est.total() / 2.0),
            ..Default::default()
        },
        |_| panic!("no step may run"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("optim.accumulation") && e.contains("available"),
        "{e}"
    );
    // Within the limit, it trains.
    rho_train::pretrain_with::<AB>(
        &r,
        &Default::default(),
        rho_train::RunOptions {
            max_steps: Some(1),
            memory_limit: Some(est.total() * 2.0),
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
}

/// f16 end to end: a loss scale far beyond f16's range overflows, each overflowing step is
/// skipped (the schedules still advance) and halves the scale until steps apply; the scale is
/// in the metrics and continues from a checkpoint.
#[test]
fn f16_runs_back_off_an_overflowing_loss_scale_and_resume_it() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    use rho_train::{pretrain_with, RunOptions};
    let index = common::videos("engine");
    let dev = Default::default();
    let out = std::env::temp_dir().join(format!("rho-f16-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut r = recipe("simclr", "lars", "", &index);
    r.output = out.clone();
    r.precision = rho_model::Precision::F16;
    r.optim.loss_scale = 2f64.powi(24);
    r.optim.loss_scale_growth_interval = 3;
    let mut logs = Vec::new();
    let opts = RunOptions {
        max_steps: Some(30),
        checkpoint_every: Some(30),
        keep: 1,
        ..Default::default()
    };
    pretrain_with::<AB>(&r, &dev, opts, |l| logs.push(l.clone())).unwrap();
    let scale: Vec<f64> = logs.iter().map(|l| l.metrics["loss_scale"]).collect();
    let over: Vec<bool> = logs.iter().map(|l| l.metrics["overflow"] == 1.0).collect();
    assert!(over[0] && logs[0].skipped, "2²⁴ must overflow: {scale:?}");
    // Measured: the scale comes down to 2¹³ (these gradients reach about 65504 / 2¹³ ≈ 8).
    let first_ok = over
        .iter()
        .position(|o| !o)
        .expect("the scale never came down");
    assert!(first_ok >= 5, "{scale:?}");
    for i in 1..logs.len() {
        let want = if over[i - 1] {
            0.5
        } else {
            scale[i] / scale[i - 1]
        };
        assert_eq!(scale[i] / scale[i - 1], want, "step {i}: {scale:?}");
        assert_eq!(logs[i].skipped, over[i], "step {i}");
    }
    assert!(
        over[first_ok..].iter().filter(|o| !**o).count() >= 3,
        "{over:?}"
    );
    // The checkpoint holds the scale the next step would use.
    let ck = rho_train::Checkpoint::read(&out.join("ckpt_00000030.rho")).unwrap();
    let saved = ck
        .meta
        .loss_scale
        .expect("an f16 checkpoint keeps its loss scale");
    assert!(
        [0.5, 1.0, 2.0].contains(&(saved.scale / scale[29])),
        "{saved:?}"
    );
    let mut resumed = Vec::new();
    let opts = RunOptions {
        max_steps: Some(31),
        resume: Some(out.join("ckpt_00000030.rho")),
        ..Default::default()
    };
    pretrain_with::<AB>(&r, &dev, opts, |l| resumed.push(l.metrics["loss_scale"])).unwrap();
    assert_eq!(resumed, [saved.scale]);
    let _ = std::fs::remove_dir_all(&out);
}
