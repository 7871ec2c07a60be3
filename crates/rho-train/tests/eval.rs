//! Evaluation end to end on generated labelled videos (rho_data::synth), on the CPU: the linear
//! probe in both BN modes with its feature cache, kNN and fine-tuning, from a rho checkpoint and
//! from exported safetensors; every configs/eval recipe parses.

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use rho_train::eval::{BnMode, EvalJob, EvalRecipe, WeightSource};
use rho_train::{pretrain_with, Recipe, RunOptions};

type AB = Autodiff<Flex>;

/// Burn's random generator is global: tests that seed it take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn dataset() -> PathBuf {
    static D: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    D.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rho-eval-{}", std::process::id()));
        let cfg = rho_data::synth::SynthConfig {
            classes: 3,
            train_per_class: 4,
            test_per_class: 2,
            frames: 16,
            size: 32,
            ..Default::default()
        };
        rho_data::synth::generate(&cfg, &dir).unwrap();
        dir
    })
    .clone()
}

fn eval_recipe(data: &Path, extra: &[String]) -> EvalRecipe {
    let text = format!(
        r#"
name = "t"
protocol = "linear"
batch = 4
epochs = 3
output = "unused"
[model]
arch = "slow_r18_tiny"
[train]
index = "{d}/train.txt"
format = "frames"
prefix = "{d}"
[test]
index = "{d}/test.txt"
format = "frames"
prefix = "{d}"
[data]
frames = 4
stride = 2
crop = 32
short_side = 32
test_clips = 2
test_crops = 3
train_views = 2
workers = 2
[optim]
base_lr = 0.1
reference_batch = 4
warmup_epochs = 1
[knn]
k = 5
"#,
        d = data.display()
    );
    EvalRecipe::parse(&text, "t", extra).unwrap()
}

/// A few ρBYOL steps on the dataset, checkpointed.
fn pretrained(data: &Path, out: &Path) -> PathBuf {
    let text = format!(
        r#"
name = "t"
batch = 4
epochs = 2
output = "{o}"
[model]
arch = "slow_r18_tiny"
[method]
kind = "byol"
[data]
index = "{d}/train.txt"
format = "frames"
prefix = "{d}"
rho = 2
frames = 4
stride = 2
crop = 32
short_side = 32
workers = 2
[optim]
optimizer = "lars"
base_lr = 0.1
reference_batch = 4
weight_decay = 1e-6
warmup_epochs = 1
warmup_start_lr = 0.001
"#,
        d = data.display(),
        o = out.display()
    );
    let recipe = Recipe::parse(&text, "t", &[]).unwrap();
    let net = pretrain_with::<AB>(
        &recipe,
        &Default::default(),
        RunOptions {
            max_steps: Some(3),
            checkpoint_every: Some(3),
            keep: 1,
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    rho_model::weights::save_safetensors(
        &net.backbone,
        &out.join("backbone.safetensors"),
        rho_model::weights::Naming::Rho,
    )
    .unwrap();
    out.join("ckpt_00000003.rho")
}

fn no_progress() -> impl FnMut(&str, usize, usize) {
    |_, _, _| {}
}

#[test]
fn every_protocol_runs_from_a_checkpoint_and_the_cache_skips_the_backbone() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = dataset();
    let out = std::env::temp_dir().join(format!("rho-eval-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let ckpt = pretrained(&data, &out);
    let dev = Default::default();
    let job = |recipe: EvalRecipe, weights: WeightSource| EvalJob {
        recipe,
        weights,
        arch: None,
        cache: Some(out.join("cache")),
    };

    // Frozen BN: the first run computes and caches features, the second reads them.
    let frozen = eval_recipe(&data, &["bn=\"frozen\"".into()]);
    assert_eq!(frozen.bn, BnMode::Frozen);
    let j = job(frozen.clone(), WeightSource::File(ckpt.clone()));
    let first = j.linear::<AB>(&dev, &mut no_progress()).unwrap();
    assert!(!first.feature_cache_hit);
    assert_eq!(
        first.train_backbone_passes, 2,
        "one pass per cached training view"
    );
    let second = j.linear::<AB>(&dev, &mut no_progress()).unwrap();
    assert!(second.feature_cache_hit);
    assert_eq!(second.train_backbone_passes, 0);
    assert_eq!(
        first.top1, second.top1,
        "cached features give the same probe"
    );
    assert_eq!(first.loss_per_epoch, second.loss_per_epoch);
    assert_eq!(
        (first.train_videos, first.test_videos, first.classes),
        (12, 6, 3)
    );
    let tested: usize = first.confusion.iter().flatten().sum();
    assert_eq!(tested, 6, "every test video is scored once");
    assert!((0.0..=100.0).contains(&first.top1) && first.top5 >= first.top1);

    // The exported safetensors backbone is the checkpoint's online backbone: same features,
    // hence the same probe.
    let mut st = job(frozen, WeightSource::File(out.join("backbone.safetensors")));
    st.cache = None;
    let from_st = st.linear::<AB>(&dev, &mut no_progress()).unwrap();
    assert_eq!(from_st.loss_per_epoch, first.loss_per_epoch);

    // The code's BN mode runs the backbone every epoch.
    let code = job(eval_recipe(&data, &[]), WeightSource::File(ckpt.clone()));
    let r = code.linear::<AB>(&dev, &mut no_progress()).unwrap();
    assert_eq!(r.bn_mode.as_deref(), Some("code"));
    assert_eq!(r.train_backbone_passes, 3);
    assert!(r.loss_per_epoch.iter().all(|l| l.is_finite() && *l > 0.0));

    // kNN and fine-tuning.
    let k = job(eval_recipe(&data, &[]), WeightSource::File(ckpt.clone()))
        .knn::<Flex>(&dev, &mut no_progress())
        .unwrap();
    assert_eq!(k.confusion.iter().flatten().sum::<usize>(), 6);
    let ft = job(
        eval_recipe(
            &data,
            &["protocol=\"finetune\"".into(), "dropout=0.5".into()],
        ),
        WeightSource::Random { seed: 3 },
    )
    .finetune::<AB>(&dev, &mut no_progress())
    .unwrap();
    assert_eq!(ft.loss_per_epoch.len(), 3);
    assert!(
        ft.loss_per_epoch.iter().all(|l| l.is_finite() && *l > 0.0),
        "{:?}",
        ft.loss_per_epoch
    );

    // Reports: JSON, markdown with the protocol, confusion PNG.
    first.write(&out.join("report")).unwrap();
    let md = std::fs::read_to_string(out.join("report/results.md")).unwrap();
    assert!(
        md.contains("2 clips × 3 crops of 32²") && md.contains("BatchNorm frozen"),
        "{md}"
    );
    assert!(out.join("report/confusion.png").exists());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report/results.json")).unwrap())
            .unwrap();
    assert_eq!(json["protocol"], "linear");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let data = dataset();
    let dev = Default::default();
    let r = eval_recipe(&data, &[]);
    let missing = EvalJob {
        recipe: r.clone(),
        weights: WeightSource::File("/nonexistent/ckpt.rho".into()),
        arch: None,
        cache: None,
    };
    let e = missing
        .knn::<Flex>(&dev, &mut no_progress())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/ckpt.rho") && e.contains("do not exist"),
        "{e}"
    );
    let mut no_arch = r.clone();
    no_arch.model = None;
    let e = EvalJob {
        recipe: no_arch,
        weights: WeightSource::Random { seed: 0 },
        arch: None,
        cache: None,
    }
    .knn::<Flex>(&dev, &mut no_progress())
    .unwrap_err()
    .to_string();
    assert!(e.contains("model.arch"), "{e}");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/eval/tiny_finetune_cpu.toml"),
    )
    .unwrap();
    let e = EvalRecipe::parse(&text.replace("dropout", "dropuot"), "typo.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("typo.toml") && e.contains("dropuot"), "{e}");
}

#[test]
fn every_eval_recipe_parses_and_the_paper_schedules_hold() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/eval");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let r = EvalRecipe::load(&p, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                Some(r.name.as_str()),
                p.file_stem().and_then(|s| s.to_str())
            );
            n += 1;
        }
    }
    assert!(n >= 5);
    // K400 linear: 4.0 at 512, 8 warm-up epochs from 0, cosine to 0 over 60 (docs/method.md §5.1).
    let lin = EvalRecipe::load(&dir.join("linear_k400_slow_r50_8x8.toml"), &[]).unwrap();
    assert_eq!(lin.lr(0.0), 0.0);
    assert!(
        (lin.lr(8.0) - 4.0 * 0.5 * (1.0 + (std::f64::consts::PI * 8.0 / 60.0).cos())).abs() < 1e-12
    );
    assert!(lin.lr(59.999) < 1e-5);
    assert_eq!(
        (lin.data.test_clips, lin.data.test_crops, lin.test_crop()),
        (10, 3, 256)
    );
    // UCF101: 0.025 × 0.1 at 60/120/180, dropout 0.8 (docs/method.md §5.2).
    let ucf = EvalRecipe::load(&dir.join("finetune_ucf101_slow_r50_8x8.toml"), &[]).unwrap();
    assert!((ucf.lr(59.0) - 0.025).abs() < 1e-12);
    assert!((ucf.lr(60.0) - 0.0025).abs() < 1e-12);
    assert!((ucf.lr(199.0) - 0.000025).abs() < 1e-12);
    assert_eq!(ucf.dropout, 0.8);
}
