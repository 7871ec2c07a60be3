//! Parity with PyTorch: weights written by pytorchvideo (and a PySlowFast checkpoint) give the
//! same features and logits in rho, and rho's key tables match the real PyTorch modules.
//! Fixtures: `scripts/make_fixtures.py`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use rho_model::weights::{load_file, slots, LoadOptions, Naming, StateDict};
use rho_model::{ModelError, ResNet3dConfig};

type B = Flex;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den).sqrt()
}

struct Io {
    input: Tensor<B, 5>,
    features: Vec<f32>,
    logits: Vec<f32>,
}

fn io() -> Io {
    let sd = StateDict::read(&fixture("slow_r50_tiny_io.safetensors")).unwrap();
    let t = |k: &str| sd.tensors.get(k).unwrap().clone();
    let x = t("input");
    let input = Tensor::from_data(
        TensorData::new(x.data, x.shape.clone()),
        &Default::default(),
    );
    Io {
        input,
        features: t("features").data,
        logits: t("logits").data,
    }
}

fn tiny(classes: Option<usize>) -> ResNet3dConfig {
    ResNet3dConfig::preset("slow_r50_tiny")
        .unwrap()
        .with_num_classes(classes)
}

#[test]
fn pytorchvideo_weights_give_pytorch_features_and_logits() {
    let model = tiny(Some(10)).init::<B>(&Default::default());
    let (model, report) = load_file(
        model,
        &fixture("slow_r50_tiny.safetensors"),
        LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(report.naming, Naming::Pytorchvideo);
    assert!(report.skipped_head.is_empty());
    let io = io();
    let (f, l) = model.try_forward_with_logits(io.input).unwrap();
    let f = f.into_data().to_vec::<f32>().unwrap();
    let l = l.unwrap().into_data().to_vec::<f32>().unwrap();
    let (ef, el) = (rel_l2(&f, &io.features), rel_l2(&l, &io.logits));
    assert!(ef < 1e-4, "features relative L2 error {ef}");
    assert!(el < 1e-4, "logits relative L2 error {el}");
}

#[test]
fn pyslowfast_ssl_checkpoint_loads_its_backbone() {
    let path = fixture("slow_r50_tiny_pyslowfast.pyth");
    // The SSL MLP head does not fit a classifier: a clear error without --allow-partial …
    let err = load_file(
        tiny(None).init::<B>(&Default::default()),
        &path,
        LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("pyslowfast") && err.contains("head.projection.layers.0.weight"),
        "{err}"
    );
    assert!(err.contains("--allow-partial"), "{err}");

    // … and the backbone alone with it; the momentum encoder is dropped and reported.
    let opts = LoadOptions {
        naming: None,
        allow_partial: true,
        ..Default::default()
    };
    let (model, report) =
        load_file(tiny(None).init::<B>(&Default::default()), &path, opts).unwrap();
    assert_eq!(report.naming, Naming::Pyslowfast);
    assert!(
        report
            .ignored
            .iter()
            .any(|k| k.starts_with("backbone_hist.")),
        "{:?}",
        report.ignored
    );
    let io = io();
    let f = model.forward(io.input).into_data().to_vec::<f32>().unwrap();
    let e = rel_l2(&f, &io.features);
    assert!(e < 1e-4, "features relative L2 error {e}");
}

#[test]
fn export_writes_exactly_pytorchvideos_keys_and_round_trips() {
    let dev = Default::default();
    let (model, _) = load_file(
        tiny(Some(10)).init::<B>(&dev),
        &fixture("slow_r50_tiny.safetensors"),
        LoadOptions::default(),
    )
    .unwrap();
    let dir = tempdir();
    for naming in [Naming::Pytorchvideo, Naming::Pyslowfast, Naming::Rho] {
        let out = dir.join(format!("w-{naming}.safetensors"));
        rho_model::weights::save_safetensors(&model, &out, naming).unwrap();
        if naming == Naming::Pytorchvideo {
            let theirs = StateDict::read(&fixture("slow_r50_tiny.safetensors")).unwrap();
            let ours = StateDict::read(&out).unwrap();
            let shapes = |sd: &StateDict| -> BTreeMap<String, Vec<usize>> {
                sd.tensors
                    .iter()
                    .map(|(k, v)| (k.clone(), v.shape.clone()))
                    .collect()
            };
            assert_eq!(shapes(&ours), shapes(&theirs));
        }
        let opts = LoadOptions {
            naming: Some(naming),
            allow_partial: false,
            ..Default::default()
        };
        let (again, _) = load_file(tiny(Some(10)).init::<B>(&dev), &out, opts).unwrap();
        let io = io();
        let l = again
            .try_logits(io.input)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        assert!(rel_l2(&l, &io.logits) < 1e-4, "{naming}");
    }
}

#[test]
fn wrong_architecture_lists_the_keys() {
    let model = ResNet3dConfig::preset("slow_r18_tiny")
        .unwrap()
        .with_num_classes(Some(10))
        .init::<B>(&Default::default());
    let err = load_file(
        model,
        &fixture("slow_r50_tiny.safetensors"),
        LoadOptions::default(),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ModelError::ReadWeights { .. }));
    assert!(
        msg.contains("pytorchvideo naming") && msg.contains("unexpected keys"),
        "{msg}"
    );
    assert!(msg.contains("… and"), "long lists are cut: {msg}");
}

#[test]
fn missing_file_and_garbage_file_are_clear_errors() {
    let model = tiny(None).init::<B>(&Default::default());
    let err = load_file(model, &fixture("nope.safetensors"), LoadOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no such file"), "{err}");
    let dir = tempdir();
    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"not a tensor file").unwrap();
    let model = tiny(None).init::<B>(&Default::default());
    let err = load_file(model, &bad, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.safetensors") && err.contains("not a valid safetensors"),
        "{err}"
    );
}

/// Key → shape tables of the full-size PyTorch modules, against rho's naming tables.
#[test]
fn key_tables_match_the_real_pytorch_modules() {
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(fixture(f)).unwrap()).unwrap()
    };
    let cases = [
        (
            "slow_r50_keys.json",
            "slow_r50",
            "slow_r50",
            Naming::Pytorchvideo,
        ),
        (
            "torchvision_keys.json",
            "r3d_18",
            "r3d_18",
            Naming::Torchvision,
        ),
        (
            "torchvision_keys.json",
            "r2plus1d_18",
            "r2plus1d_18",
            Naming::Torchvision,
        ),
    ];
    for (file, key, preset, naming) in cases {
        let table = read(file);
        let want: BTreeMap<String, Vec<usize>> =
            serde_json::from_value(table[key].clone()).unwrap();
        let model = ResNet3dConfig::preset(preset)
            .unwrap()
            .with_num_classes(Some(400))
            .init::<B>(&Default::default());
        let mut got = BTreeMap::new();
        for s in slots(&model, naming) {
            if let Some(c) = s.batch_counter_key(naming) {
                got.insert(c, vec![]);
            }
            got.insert(s.key(naming).unwrap(), s.torch_shape.clone());
        }
        assert_eq!(got, want, "{preset} in {naming} naming");
    }
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "rho-model-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every preset survives export → load in every naming that can express it (this also proves
/// that the naming tables reach every tensor of the module tree).
#[test]
fn every_tiny_preset_round_trips_in_every_naming() {
    let dev = Default::default();
    let dir = tempdir();
    for preset in [
        "slow_r50_tiny",
        "slow_r18_tiny",
        "r3d_18_tiny",
        "r2plus1d_18_tiny",
    ] {
        let cfg = ResNet3dConfig::preset(preset)
            .unwrap()
            .with_num_classes(Some(5));
        let a = cfg.init::<B>(&dev);
        let x = Tensor::<B, 5>::random(
            [1, 3, 8, 32, 32],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &dev,
        );
        let want = a
            .try_logits(x.clone())
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for naming in rho_model::weights::NAMINGS {
            let out = dir.join(format!("{preset}-{naming}.safetensors"));
            match rho_model::weights::save_safetensors(&a, &out, *naming) {
                Ok(()) => {}
                Err(ModelError::Naming { .. }) => continue, // e.g. (2+1)D in pytorchvideo naming
                Err(e) => panic!("{preset} {naming}: {e}"),
            }
            let (b, report) = load_file(cfg.init::<B>(&dev), &out, LoadOptions::default()).unwrap();
            assert_eq!(report.naming, *naming);
            let got = b
                .try_logits(x.clone())
                .unwrap()
                .into_data()
                .to_vec::<f32>()
                .unwrap();
            assert!(rel_l2(&got, &want) < 1e-6, "{preset} {naming}");
        }
    }
}
