//! Every recipe in configs/ parses and validates; bad keys and values are clear errors.

use std::path::PathBuf;

use rho_train::Recipe;

/// Every pre-training recipe: configs/*.toml and the demo's configs/demo/*.toml.
fn configs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut v: Vec<PathBuf> = [root.clone(), root.join("demo")]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_recipe_parses_and_validates() {
    let all = configs();
    assert!(all.len() >= 12, "{all:?}");
    for p in &all {
        let r = Recipe::load(p, &[]).unwrap_or_else(|e| panic!("{e}"));
        // configs/demo/byol.toml is `demo_byol`, configs/tiny_byol_cpu.toml `tiny_byol_cpu`.
        let folder = p
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|s| s.to_str());
        let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let want = match folder {
            Some("demo") => format!("demo_{stem}"),
            _ => stem.to_string(),
        };
        assert_eq!(r.name, want, "{}: the name matches the file", p.display());
        let s = r.schedule();
        assert!(s.lr(s.warmup_epochs) > 0.0);
        r.method_config().validate().unwrap();
    }
}

#[test]
fn paper_learning_rates_after_scaling() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let peak = |f: &str| Recipe::load(&dir.join(f), &[]).unwrap().schedule().base_lr;
    assert!((peak("moco_slow_r50_8x8_k400.toml") - 0.4).abs() < 1e-9);
    for f in [
        "byol_slow_r50_8x8_k400.toml",
        "simclr_slow_r50_8x8_k400.toml",
        "swav_slow_r50_8x8_k400.toml",
    ] {
        assert!((peak(f) - 4.8).abs() < 1e-9, "{f}");
    }
    let r = Recipe::load(&dir.join("byol_slow_r50_16x4_k400_rho4.toml"), &[]).unwrap();
    assert_eq!((r.data.frames, r.data.stride, r.data.rho), (16, 4, 4));
}

#[test]
fn unknown_keys_and_bad_values_are_clear_errors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let text = std::fs::read_to_string(dir.join("tiny_byol_cpu.toml")).unwrap();
    let typo = text.replace("base_lr", "base_lrr");
    let e = Recipe::parse(&typo, "typo.toml", &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("typo.toml") && e.contains("base_lrr") && e.contains("base_lr"),
        "{e}"
    );
    let e = Recipe::parse(&text, "t", &["model.arch=slow_r51".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("slow_r51") && e.contains("slow_r50"), "{e}");
    let e = Recipe::parse(&text, "t", &["optim.warmup_epochs=30".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("warmup_epochs"), "{e}");
    let e = Recipe::parse(&text, "t", &["method.kind=\"dino\"".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("dino"), "{e}");
    // --set overrides any field, typed.
    let r = Recipe::parse(
        &text,
        "t",
        &[
            "data.rho=4".into(),
            "optim.base_lr=1.5".into(),
            "output=runs/x".into(),
        ],
    )
    .unwrap();
    assert_eq!(r.data.rho, 4);
    assert!((r.optim.base_lr - 1.5).abs() < 1e-12);
    assert_eq!(r.output, PathBuf::from("runs/x"));
}

#[test]
fn swav_sinkhorn_keys_reach_the_method_and_bad_values_are_refused() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let text = std::fs::read_to_string(dir.join("demo/swav.toml")).unwrap();
    let sets = [
        "method.sinkhorn_epsilon=0.02".into(),
        "method.sinkhorn_iterations=5".into(),
        "method.freeze_prototypes_epochs=0.5".into(),
    ];
    let c = Recipe::parse(&text, "t", &sets).unwrap().method_config();
    assert_eq!(c.sinkhorn_epsilon, 0.02);
    assert_eq!(c.sinkhorn_iterations, 5);
    assert_eq!(c.freeze_prototypes_epochs, 0.5);
    for bad in [
        "method.sinkhorn_epsilon=0.0",
        "method.sinkhorn_iterations=0",
    ] {
        let e = Recipe::parse(&text, "t", &[bad.into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("sinkhorn"), "{bad}: {e}");
    }
}

#[test]
fn the_predictor_multiplier_is_byol_only_and_positive() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let byol = std::fs::read_to_string(dir.join("demo/byol.toml")).unwrap();
    let simclr = std::fs::read_to_string(dir.join("demo/simclr.toml")).unwrap();
    let set = |v: &str| vec![format!("optim.predictor_lr_multiplier={v}")];
    let tiny = std::fs::read_to_string(dir.join("tiny_byol_cpu.toml")).unwrap();
    let multiplier = |text: &str, sets: &[String]| {
        Recipe::parse(text, "t", sets)
            .unwrap()
            .optim
            .predictor_lr_multiplier
    };
    // Left out: the paper's single rate.
    assert_eq!(multiplier(&tiny, &[]), 1.0);
    assert_eq!(multiplier(&byol, &[]), 1.0);
    assert_eq!(multiplier(&byol, &set("10")), 10.0);
    for bad in ["0", "-2", "nan", "inf"] {
        let e = Recipe::parse(&byol, "t", &set(bad))
            .unwrap_err()
            .to_string();
        assert!(e.contains("optim.predictor_lr_multiplier"), "{bad}: {e}");
    }
    let e = Recipe::parse(&simclr, "t", &set("10"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("predictor") && e.contains("byol"), "{e}");
    // 1 is the common rate, fine for every method.
    Recipe::parse(&simclr, "t", &set("1")).unwrap();
}

#[test]
fn sync_bn_reads_off_all_or_a_group_and_fits_the_device_count() {
    use rho_train::recipe::SyncBn;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let text = std::fs::read_to_string(dir.join("tiny_byol_cpu.toml")).unwrap();
    let with = |v: &str| Recipe::parse(&text, "t", &[format!("model.sync_bn={v}")]);
    assert_eq!(
        Recipe::parse(&text, "t", &[]).unwrap().model.sync_bn,
        SyncBn::Off
    );
    assert_eq!(with("all").unwrap().model.sync_bn, SyncBn::All);
    assert_eq!(with("\"off\"").unwrap().model.sync_bn, SyncBn::Off);
    assert_eq!(with("8").unwrap().model.sync_bn, SyncBn::Group(8));
    let e = with("\"some\"").unwrap_err().to_string();
    assert!(e.contains("\"off\", \"all\" or a group size"), "{e}");
    // The paper's recipes: SyncBN 8 for BYOL, SimCLR and SwAV; per-device BN for MoCo.
    for (file, want) in [
        ("byol_slow_r50_8x8_k400.toml", SyncBn::Group(8)),
        ("simclr_slow_r50_8x8_k400.toml", SyncBn::Group(8)),
        ("swav_slow_r50_8x8_k400.toml", SyncBn::Group(8)),
        ("moco_slow_r50_8x8_k400.toml", SyncBn::Off),
    ] {
        assert_eq!(
            Recipe::load(&dir.join(file), &[]).unwrap().model.sync_bn,
            want,
            "{file}"
        );
    }
    // Group sizes on a given number of devices: a group larger than the world is the world.
    assert_eq!(SyncBn::Group(8).group_size(64), Ok(8));
    assert_eq!(SyncBn::Group(8).group_size(2), Ok(2));
    assert_eq!(SyncBn::All.group_size(4), Ok(4));
    assert_eq!(SyncBn::Off.group_size(4), Ok(1));
    let e = SyncBn::Group(3).group_size(4).unwrap_err();
    assert!(
        e.contains("model.sync_bn = 3") && e.contains("divisor of 4"),
        "{e}"
    );
    // The recipe round-trips through a checkpoint's embedded TOML.
    let r = with("8").unwrap();
    let back = Recipe::parse(&toml::to_string(&r).unwrap(), "back", &[]).unwrap();
    assert_eq!(back.model.sync_bn, SyncBn::Group(8));
}

#[test]
fn method_keys_change_the_preset_and_a_written_recipe_reads_back_the_same() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let text = std::fs::read_to_string(dir.join("demo/byol.toml")).unwrap();
    let r = Recipe::parse(&text, "t", &["method.momentum_base=0.9".into()]).unwrap();
    let preset = rho_objectives::MethodConfig::preset(rho_objectives::MethodKind::Byol);
    assert_eq!(r.method.momentum_base, 0.9);
    // Keys the recipe does not give keep the preset's values.
    assert_eq!(r.method.predictor_hidden, preset.predictor_hidden);
    // The output BatchNorm is off in the preset and the demo's recipe, and a key turns it on.
    assert!(!r.method.proj_out_bn && !preset.proj_out_bn);
    let on = Recipe::parse(&text, "t", &["method.proj_out_bn=true".into()]).unwrap();
    assert!(on.method.proj_out_bn);
    // Written out (run cards, checkpoints), every field is resolved and reads back identically.
    let written = toml::to_string(&r).unwrap();
    assert!(written.contains("predictor_hidden"), "{written}");
    assert_eq!(Recipe::parse(&written, "written", &[]).unwrap(), r);
    // An unknown key names itself and the keys [method] accepts.
    let e = Recipe::parse(&text, "t", &["method.temprature=0.2".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("temprature") && e.contains("temperature"), "{e}");
}

/// Augmentation ranges and probabilities that would make sampling panic are refused when the
/// recipe is read, with the key named.
#[test]
fn bad_augmentation_values_are_refused_with_their_key() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let text = std::fs::read_to_string(dir.join("demo/byol.toml")).unwrap();
    for (set, key) in [
        ("data.augment.area=[0.9, 0.3]", "area"),
        ("data.augment.area=[0.0, 1.0]", "area"),
        ("data.augment.flip_p=1.5", "flip_p"),
        ("data.augment.blur_p=-0.1", "blur_p"),
        ("data.augment.jitter=[0.4, 0.4, 0.4, 0.7]", "jitter"),
        ("data.augment.blur_sigma=[2.0, 0.1]", "blur_sigma"),
    ] {
        let e = Recipe::parse(&text, "t", &[set.to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("data.augment.{key}")), "{set}: {e}");
    }
    assert!(Recipe::parse(&text, "t", &["data.augment.area=[0.3, 1.0]".into()]).is_ok());
}
