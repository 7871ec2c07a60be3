//! The `rho` binary end to end: feature extraction, conversion, and the dataset doctor.

use std::path::{Path, PathBuf};
use std::process::Command;

fn rho() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rho"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rho-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

#[test]
fn embed_convert_and_clear_errors() {
    let d = tmp("embed");
    let clip = d.join("clip.npy");
    assert!(
        run(rho()
            .args(["make-clip", "--shape", "2,3,4,32,32", "--out"])
            .arg(&clip))
        .0
    );
    // The PySlowFast checkpoint converted to pytorchvideo naming, then used for features.
    let w = d.join("w.safetensors");
    let (ok, log) = run(rho()
        .args(["convert"])
        .arg(fixture("slow_r50_tiny_pyslowfast.pyth"))
        .arg(&w)
        .args([
            "--naming",
            "pytorchvideo",
            "--arch",
            "slow_r50_tiny",
            "--allow-partial",
        ]));
    assert!(ok, "{log}");
    // The same weights exported by another process give the same bytes (sorted header).
    let again = d.join("w2.safetensors");
    let (ok, log) = run(rho()
        .args(["convert"])
        .arg(fixture("slow_r50_tiny_pyslowfast.pyth"))
        .arg(&again)
        .args(["--naming", "pytorchvideo", "--arch", "slow_r50_tiny"])
        .arg("--allow-partial"));
    assert!(ok, "{log}");
    assert!(
        std::fs::read(&w).unwrap() == std::fs::read(&again).unwrap(),
        "two exports of the same weights differ"
    );
    let feats = d.join("f.npy");
    let (ok, log) = run(rho()
        .args(["embed", "--arch", "slow_r50_tiny", "--weights"])
        .arg(&w)
        .arg("--input")
        .arg(&clip)
        .arg("--out")
        .arg(&feats));
    assert!(ok, "{log}");
    let bytes = std::fs::read(&feats).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY") && bytes.len() > 2 * 256 * 4);
    // Wrong layout: the message says what is wrong.
    let bad = d.join("bad.npy");
    assert!(
        run(rho()
            .args(["make-clip", "--shape", "2,4,3,32,32", "--out"])
            .arg(&bad))
        .0
    );
    let (ok, log) = run(rho()
        .args([
            "embed",
            "--arch",
            "slow_r50_tiny",
            "--random-init",
            "--input",
        ])
        .arg(&bad)
        .arg("--out")
        .arg(d.join("x.npy")));
    assert!(!ok && log.contains("expected 3 channels"), "{log}");
    // Logits from weights without a head: refused with a reason.
    let (ok, log) = run(rho()
        .args(["embed", "--arch", "slow_r50_tiny", "--weights"])
        .arg(&w)
        .arg("--input")
        .arg(&clip)
        .arg("--out")
        .arg(&feats)
        .arg("--logits")
        .arg(d.join("l.npy")));
    assert!(!ok && log.contains("classification head"), "{log}");
}

/// `ffmpeg -f lavfi -i SOURCE CODEC… OUT`.
fn ffmpeg(source: &str, codec: &[&str], out: &Path) {
    rho_data::synthetic::lavfi_video(out, source, codec).unwrap();
}

/// A tiny pre-training recipe over `videos`, writing to `out`; `method` and `optim` are the
/// bodies of those sections.
fn tiny_recipe(path: &Path, videos: &Path, out: &Path, epochs: usize, method: &str, optim: &str) {
    let text = format!(
        "name = \"t\"\nbatch = 2\nepochs = {epochs}\noutput = \"{}\"\n[model]\narch = \"slow_r18_tiny\"\n[method]\n{method}\n[data]\nindex = \"{}\"\nrho = 2\nframes = 4\nstride = 2\ncrop = 32\nshort_side = 40\nworkers = 1\n[optim]\n{optim}\nreference_batch = 2\nwarmup_epochs = 0.5\nwarmup_start_lr = 0.001\n",
        out.display(),
        videos.display()
    );
    std::fs::write(path, text).unwrap();
}

#[test]
fn data_check_reports_every_bad_file_and_exits_zero() {
    let d = tmp("check");
    std::fs::create_dir_all(d.join("a")).unwrap();
    std::fs::create_dir_all(d.join("b")).unwrap();
    ffmpeg(
        "testsrc2=s=64x48:r=30:d=3",
        &["-c:v", "libx264", "-preset", "ultrafast"],
        &d.join("a/good.mp4"),
    );
    ffmpeg(
        "testsrc2=s=64x48:r=30:d=1",
        &["-c:v", "mpeg4"],
        &d.join("b/short.avi"),
    );
    std::fs::write(d.join("b/noise.mp4"), vec![1u8; 3000]).unwrap();
    std::fs::write(d.join("a/empty.webm"), b"").unwrap();
    let good = std::fs::read(d.join("a/good.mp4")).unwrap();
    std::fs::write(d.join("b/truncated.mp4"), &good[..good.len() / 3]).unwrap();
    let q = d.join("quarantine.txt");
    let (ok, log) = run(rho()
        .args(["data", "check"])
        .arg(&d)
        .arg("--quarantine")
        .arg(&q));
    assert!(ok, "{log}");
    assert!(log.contains("decodable              2"), "{log}");
    assert!(log.contains("shorter than one clip  1"), "{log}");
    let bad = std::fs::read_to_string(&q).unwrap();
    for f in ["noise.mp4", "empty.webm", "truncated.mp4"] {
        assert!(bad.contains(f), "{f} not quarantined: {bad}");
    }
    assert_eq!(bad.lines().count(), 3);

    // The full loader over the mixed folder: bad videos are substituted, the epoch completes.
    let (ok, log) = run(rho()
        .args([
            "data",
            "bench",
            "--loader",
            "--workers",
            "2",
            "--batch",
            "2",
            "--rho",
            "2",
            "--frames",
            "4",
            "--stride",
            "4",
            "--size",
            "32",
            "--short-side",
            "48",
        ])
        .arg(&d));
    assert!(ok, "{log}");
    assert!(
        log.contains("2 batches [2, 2, 3, 4, 32, 32]") && log.contains("bad videos substituted"),
        "{log}"
    );

    // The same videos through a UCF101-style split.
    std::fs::write(d.join("classInd.txt"), "1 a\r\n2 b\r\n").unwrap();
    std::fs::write(
        d.join("trainlist01.txt"),
        "a/good.mp4 1\r\nb/short.avi 2\r\nb/noise.mp4 2\r\n",
    )
    .unwrap();
    let (ok, log) = run(rho()
        .args(["data", "check", "--format", "ucf101", "--class-ind"])
        .arg(d.join("classInd.txt"))
        .arg("--prefix")
        .arg(&d)
        .arg(d.join("trainlist01.txt")));
    assert!(ok, "{log}");
    assert!(
        log.contains("checked 3 entries") && log.contains("decodable              2"),
        "{log}"
    );
    let (ok, log) = run(rho()
        .args(["data", "check", "--format", "ucf101"])
        .arg(d.join("trainlist01.txt")));
    assert!(!ok && log.contains("--class-ind"), "{log}");
}

#[test]
fn pretrain_writes_metrics_and_a_loadable_backbone() {
    let d = tmp("pretrain");
    rho_data::synthetic::test_videos(&d, 4, 64, 48, 15, 2.0).unwrap();
    let out = d.join("run");
    tiny_recipe(
        &d.join("r.toml"),
        &d,
        &out,
        2,
        "kind = \"byol\"",
        "optimizer = \"lars\"\nbase_lr = 0.3\nweight_decay = 1e-6",
    );
    let (ok, log) = run(rho()
        .args(["pretrain", "--config"])
        .arg(d.join("r.toml"))
        .args(["--set", "data.rho=3"]));
    assert!(ok, "{log}");
    assert!(log.contains("override: data.rho=3"), "{log}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        4,
        "2 epochs × 2 batches: {metrics}"
    );
    assert!(metrics.lines().all(|l| l.contains("\"loss\"")));
    for png in ["loss.png", "lr.png", "collapse.png", "run_card.toml"] {
        assert!(out.join(png).exists(), "{png} missing");
    }
    let clip = d.join("clip.npy");
    assert!(
        run(rho()
            .args(["make-clip", "--shape", "1,3,4,32,32", "--out"])
            .arg(&clip))
        .0
    );
    let (ok, log) = run(rho()
        .args(["embed", "--arch", "slow_r18_tiny", "--weights"])
        .arg(out.join("backbone.safetensors"))
        .arg("--input")
        .arg(&clip)
        .arg("--out")
        .arg(d.join("f.npy")));
    assert!(ok, "{log}");
    // A recipe with a typo is refused before anything runs.
    std::fs::write(
        d.join("bad.toml"),
        std::fs::read_to_string(d.join("r.toml"))
            .unwrap()
            .replace("crop", "crpo"),
    )
    .unwrap();
    let (ok, log) = run(rho().args(["pretrain", "--config"]).arg(d.join("bad.toml")));
    assert!(!ok && log.contains("crpo"), "{log}");
}

/// SIGKILL at any moment loses at most the steps since the last checkpoint, and the checkpoint on
/// disk is never corrupt: the killed run resumes to completion.
#[test]
fn a_killed_run_resumes_from_its_last_checkpoint() {
    let d = tmp("sigkill");
    rho_data::synthetic::test_videos(&d, 4, 64, 48, 15, 2.0).unwrap();
    let out = d.join("run");
    let cfg = d.join("r.toml");
    tiny_recipe(
        &cfg,
        &d,
        &out,
        50,
        "kind = \"moco\"\nqueue_len = 8",
        "optimizer = \"sgd\"\nbase_lr = 0.05\nweight_decay = 1e-4",
    );
    let mut child = rho()
        .args(["pretrain", "--config"])
        .arg(&cfg)
        .args(["--checkpoint-every", "1", "--keep", "3"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::fs::read_dir(&out)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("ckpt_"))
                .count()
        })
        .unwrap_or(0)
        < 3
    {
        assert!(started.elapsed().as_secs() < 120, "no checkpoints appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // Every checkpoint left behind is complete (no half-written file under a final name).
    let ckpts: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rho"))
        .collect();
    assert!(!ckpts.is_empty() && ckpts.len() <= 4);
    let (ok, log) = run(rho().args(["pretrain", "--config"]).arg(&cfg).args([
        "--resume",
        "--max-steps",
        "20",
        "--checkpoint-every",
        "5",
    ]));
    assert!(ok, "{log}");
    assert!(log.contains("resuming from"), "{log}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let last = metrics.lines().last().unwrap();
    assert!(last.starts_with("{\"step\":19,"), "{last}");
}

/// The demo with a smaller budget (and `extra` arguments): synthetic videos, pre-training,
/// probe and kNN; returns the folder and `results.json`.
fn reduced_demo(tag: &str, extra: &[&str]) -> (PathBuf, serde_json::Value, String) {
    let d = tmp(tag);
    let (ok, log) = run(rho()
        .args([
            "demo",
            "--classes",
            "4",
            "--train-per-class",
            "16",
            "--test-per-class",
            "8",
            "--max-steps",
            "320",
            "--eval-set",
            "data.test_clips=2",
        ])
        .args(extra)
        .arg("--out")
        .arg(&d));
    assert!(ok, "{log}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("results.json")).unwrap()).unwrap();
    for p in ["linear", "knn"] {
        for w in ["learned", "random"] {
            let v = results[p][w].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&v), "{results}");
        }
    }
    (d, results, log)
}

fn top1(results: &serde_json::Value, protocol: &str, weights: &str) -> f64 {
    results[protocol][weights].as_f64().unwrap()
}

/// The reduced demo: the learned features beat randomly initialised ones on held-out videos.
#[test]
fn a_reduced_demo_learns_features_that_beat_random_ones() {
    let (d, results, log) = reduced_demo("demo", &[]);
    assert!(
        top1(&results, "linear", "learned") > top1(&results, "linear", "random"),
        "the probe on learned features should beat random ones: {results}\n{log}"
    );
    for f in [
        "results.md",
        "demo.png",
        "pretrain/loss.png",
        "linear_learned/confusion.png",
    ] {
        assert!(d.join(f).exists(), "{f} missing");
    }
}

/// Mixed precision: the reduced demo with bf16 convolutions and Linear layers, in pre-training
/// and evaluation, still learns.
#[test]
fn a_reduced_bf16_demo_learns() {
    let (_, results, log) = reduced_demo(
        "demo-bf16",
        &["--set", "precision=bf16", "--eval-set", "precision=bf16"],
    );
    assert!(
        top1(&results, "linear", "learned") > top1(&results, "linear", "random"),
        "bf16: {results}\n{log}"
    );
}

/// `rho synth`, then each `rho eval` protocol on its lists; a second frozen-BN probe reads the
/// feature cache.
#[test]
fn synth_and_every_eval_command() {
    let d = tmp("eval");
    let data = d.join("data");
    let (ok, log) = run(rho()
        .args([
            "synth",
            "--classes",
            "3",
            "--train-per-class",
            "4",
            "--test-per-class",
            "2",
        ])
        .args(["--frames", "16", "--size", "32", "--out"])
        .arg(&data));
    assert!(ok, "{log}");
    let recipe =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/eval/tiny_finetune_cpu.toml");
    let lists = |which: &str| {
        vec![
            "--set".to_string(),
            format!(
                "{which}.index=\"{}\"",
                data.join(format!("{which}.txt")).display()
            ),
            "--set".to_string(),
            format!("{which}.prefix=\"{}\"", data.display()),
        ]
    };
    let eval = |protocol: &str, extra: &[&str], out: &str| {
        let mut c = rho();
        c.args(["eval", protocol, "--config"])
            .arg(&recipe)
            .args(lists("train"))
            .args(lists("test"))
            .args([
                "--set",
                "epochs=2",
                "--set",
                "batch=4",
                "--set",
                "data.crop=32",
            ])
            .args(["--set", "data.short_side=32", "--set", "data.test_clips=2"])
            .args(extra)
            .arg("--out")
            .arg(d.join(out));
        run(&mut c)
    };
    let (ok, log) = eval("linear", &["--random", "0", "--bn", "frozen"], "lin");
    assert!(ok, "{log}");
    assert!(
        log.contains("| linear |") && log.contains("BatchNorm frozen"),
        "{log}"
    );
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("lin/results.json")).unwrap())
            .unwrap();
    assert_eq!(first["feature_cache_hit"], false);
    let (ok, log) = eval("linear", &["--random", "0", "--bn", "frozen"], "lin");
    assert!(ok, "{log}");
    let second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("lin/results.json")).unwrap())
            .unwrap();
    assert_eq!(second["feature_cache_hit"], true);
    assert_eq!(second["top1"], first["top1"]);
    assert!(d.join("lin/confusion.png").exists() && d.join("lin/results.md").exists());
    // The probe's curve and result for TensorBoard: one loss per epoch, then top-1 = results.json.
    let events = rho_train::tensorboard::read_scalars(
        &d.join("lin").join(rho_train::tensorboard::FILE_NAME),
    )
    .unwrap();
    let epochs = second["loss_per_epoch"].as_array().unwrap().len();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.tag == "eval/linear/loss")
            .count(),
        epochs
    );
    let top1 = events.iter().find(|e| e.tag == "eval/linear/top1").unwrap();
    assert!((f64::from(top1.value) - second["top1"].as_f64().unwrap()).abs() < 1e-4);
    let (ok, log) = eval("knn", &["--random", "0", "--set", "knn.k=3"], "knn");
    assert!(ok && log.contains("| knn |"), "{log}");
    let (ok, log) = eval("finetune", &["--random", "0"], "ft");
    assert!(ok && log.contains("| finetune |"), "{log}");
    // Weights that do not exist: a clear error naming them.
    let (ok, log) = eval("knn", &["--weights", "/nonexistent.rho"], "bad");
    assert!(!ok && log.contains("/nonexistent.rho"), "{log}");
}

/// Every tensor of a safetensors file, by name.
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let v = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, v)
        })
        .collect()
}

fn losses(run_dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["metrics"]["loss"].as_f64())
        .collect()
}

/// `rho pretrain` on one device, on two in-process devices (`--devices 2`), and as two MPI
/// processes (`mpirun -np 2`): the same losses and the same backbone, for every method, with
/// SyncBatchNorm over both halves of the batch.
#[test]
fn data_parallel_runs_match_the_single_device_run_in_process_and_under_mpirun() {
    let d = tmp("dp");
    rho_data::synthetic::test_videos(&d, 8, 64, 48, 15, 2.0).unwrap();
    let mpirun = Command::new("mpirun").arg("--version").output().is_ok();
    assert!(
        mpirun || !cfg!(feature = "mpi"),
        "mpirun not found: scripts/setup.sh installs Open MPI (openmpi-bin)"
    );
    // Moderate learning rates: at LARS 0.3 the float rounding of the pooled statistics (1e-7)
    // grows to 1e-2 in BatchNorm's γ within three steps of this 4-video batch (measured), which
    // would hide the comparison.
    let lars = "optimizer = \"lars\"\nbase_lr = 0.05\nweight_decay = 1e-6";
    for (method, optim, steps) in [
        ("kind = \"simclr\"", lars, 3),
        ("kind = \"byol\"", lars, 3),
        ("kind = \"swav\"\nprototypes = 10", lars, 3),
        (
            "kind = \"moco\"\nqueue_len = 8",
            "optimizer = \"sgd\"\nbase_lr = 0.05\nweight_decay = 1e-4",
            4,
        ),
    ] {
        let out = |name: &str| d.join(format!("{}-{name}", &method[8..12]));
        let recipe = d.join("r.toml");
        tiny_recipe(&recipe, &d, &d.join("unused"), 4, method, optim);
        let text = std::fs::read_to_string(&recipe)
            .unwrap()
            .replace("batch = 2", "batch = 4")
            .replace("reference_batch = 2", "reference_batch = 4")
            .replace("[model]\n", "[model]\nsync_bn = \"all\"\n");
        std::fs::write(&recipe, text).unwrap();
        let args = |o: PathBuf| {
            vec![
                "pretrain".to_string(),
                "--config".into(),
                recipe.display().to_string(),
                "--max-steps".into(),
                steps.to_string(),
                "--set".into(),
                format!("output=\"{}\"", o.display()),
            ]
        };
        let (ok, log) = run(rho().args(args(out("one"))));
        assert!(ok, "{log}");
        let mut init = args(out("init"));
        init[4] = "0".into();
        let (ok, log) = run(rho().args(init));
        assert!(ok, "{log}");
        let (ok, log) = run(rho().args(args(out("two"))).args(["--devices", "2"]));
        assert!(ok, "{log}");
        assert!(log.contains("data parallel: 2 devices"), "{log}");
        let mut runs = vec![out("two")];
        if mpirun && cfg!(feature = "mpi") {
            let (ok, log) = run(Command::new("mpirun")
                .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
                .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
                .args(["--oversubscribe", "-np", "2"])
                .arg(env!("CARGO_BIN_EXE_rho"))
                .args(args(out("mpi"))));
            assert!(ok, "{log}");
            assert!(log.contains("over 2 processes"), "{log}");
            runs.push(out("mpi"));
        }
        let (l1, w1) = (
            losses(&out("one")),
            tensors(&out("one").join("backbone.safetensors")),
        );
        let w0 = tensors(&out("init").join("backbone.safetensors"));
        // How far the steps moved any value: the scale "equal" is measured against.
        let moved = w1
            .iter()
            .flat_map(|(k, a)| a.iter().zip(&w0[k]).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max);
        assert_eq!(l1.len(), steps, "{method}");
        for r in runs {
            let (l2, w2) = (losses(&r), tensors(&r.join("backbone.safetensors")));
            for (a, b) in l1.iter().zip(&l2) {
                assert!(
                    (a - b).abs() < 1e-4 * a.abs().max(1.0),
                    "{method} {}: losses {l1:?} vs {l2:?}",
                    r.display()
                );
            }
            assert_eq!(w1.len(), w2.len());
            let gap = w1
                .iter()
                .flat_map(|(k, a)| a.iter().zip(&w2[k]).map(|(x, y)| (x - y).abs()))
                .fold(0f32, f32::max);
            assert!(
                gap < 1e-3 * moved,
                "{method} {}: weights differ by {gap:.2e}; the steps moved them by {moved:.2e}",
                r.display()
            );
        }
    }
}

/// `mpirun ARGS` (as root where need be), failing the test if the job outlives 120 s: success
/// and the combined output.
#[cfg(feature = "mpi")]
fn mpirun(args: &[&str]) -> (bool, String) {
    let mut child = Command::new("mpirun")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mpirun (scripts/setup.sh installs Open MPI)");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() > 120 {
            let _ = child.kill();
            panic!("mpirun {args:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

/// A rank that fails under mpirun ends the whole job with its error, instead of leaving the
/// other rank waiting in a collective forever.
#[test]
#[cfg(feature = "mpi")]
fn a_failing_mpi_rank_ends_the_job_with_its_error() {
    let d = tmp("mpi-fail");
    rho_data::synthetic::test_videos(&d, 4, 64, 48, 15, 2.0).unwrap();
    std::fs::write(d.join("file"), "not a folder").unwrap();
    tiny_recipe(
        &d.join("r.toml"),
        &d,
        &d.join("file/run"), // rank 0 cannot create its output folder
        1,
        "kind = \"byol\"",
        "optimizer = \"lars\"\nbase_lr = 0.05\nweight_decay = 1e-6",
    );
    let text = std::fs::read_to_string(d.join("r.toml")).unwrap();
    std::fs::write(d.join("r.toml"), text.replace("batch = 2", "batch = 4")).unwrap();
    let config = d.join("r.toml").display().to_string();
    let rho = env!("CARGO_BIN_EXE_rho");
    let (ok, log) = mpirun(&[
        "--oversubscribe",
        "-np",
        "2",
        rho,
        "pretrain",
        "--config",
        &config,
    ]);
    assert!(!ok, "{log}");
    assert!(log.contains("cannot create"), "{log}");
}

#[test]
fn launch_slurm_writes_a_resumable_one_process_per_gpu_script() {
    let d = tmp("slurm");
    let cfg =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/byol_slow_r50_8x8_k400.toml");
    let script = d.join("job.sbatch");
    let (ok, log) = run(rho()
        .args(["launch", "slurm", "--config"])
        .arg(&cfg)
        .args([
            "--nodes",
            "8",
            "--gpus-per-node",
            "8",
            "--partition",
            "gpu",
            "--set",
            "data.rho=4",
            "--out",
        ])
        .arg(&script));
    assert!(ok, "{log}");
    let s = std::fs::read_to_string(&script).unwrap();
    for want in [
        "#SBATCH --nodes=8",
        "#SBATCH --ntasks-per-node=8",
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --partition=gpu",
        "#SBATCH --requeue",
        "8 videos per GPU, SyncBN group 8",
        "srun --mpi=pmix",
        "--backend cuda pretrain --config",
        "--resume auto --set data.rho=4",
    ] {
        assert!(s.contains(want), "{want} missing from:\n{s}");
    }
    // A batch that does not split over the GPUs is refused with the fix.
    let (ok, log) = run(rho().args(["launch", "slurm", "--config"]).arg(&cfg).args([
        "--nodes",
        "3",
        "--gpus-per-node",
        "5",
    ]));
    assert!(!ok && log.contains("multiple of 15"), "{log}");
}

/// Under mpirun, a rank left waiting in a collective (here its peer made fewer calls and left)
/// is reported with its rank and call after the timeout, and the job ends.
#[test]
#[cfg(feature = "mpi")]
fn an_mpi_rank_waiting_past_the_timeout_stops_the_job_with_rank_and_call() {
    let rho = env!("CARGO_BIN_EXE_rho");
    let bench = |iters: &'static str| {
        vec![
            rho,
            "bench",
            "collective",
            "--floats",
            "1000",
            "--iters",
            iters,
            "--timeout-s",
            "2",
        ]
    };
    let mut args = vec!["--oversubscribe", "-np", "1"];
    args.extend(bench("5"));
    args.extend([":", "-np", "1"]);
    args.extend(bench("1"));
    let (ok, log) = mpirun(&args);
    assert!(!ok, "{log}");
    assert!(
        log.contains("rank 0: collective #") && log.contains("(benchmark) timed out after"),
        "{log}"
    );
}

/// The float32 data and shape of a `.npy` rho wrote (version 1 header).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let b = std::fs::read(path).unwrap();
    let n = u16::from_le_bytes([b[8], b[9]]) as usize;
    let header = String::from_utf8_lossy(&b[10..10 + n]).to_string();
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap()
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let data = b[10 + n..]
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (shape, data)
}

/// A float32 C-order `.npy`, written here by hand (not by rho).
fn write_npy(path: &Path, shape: &[usize], data: &[f32]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16).to_le_bytes());
    b.extend(header.as_bytes());
    b.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(path, b).unwrap();
}

#[test]
fn embed_on_videos_equals_the_same_centre_clip_given_as_npy() {
    let d = tmp("embed-videos");
    let data = d.join("synth");
    let (ok, log) = run(rho()
        .args(["synth", "--classes", "2", "--train-per-class", "2"])
        .args(["--test-per-class", "1", "--out"])
        .arg(&data));
    assert!(ok, "{log}");
    let w = d.join("w.safetensors");
    let (ok, log) = run(rho()
        .args(["init", "--arch", "slow_r18_tiny", "--out"])
        .arg(&w));
    assert!(ok, "{log}");
    let embed = |input: &Path, out: &Path, extra: &[&str]| {
        run(rho()
            .args(["embed", "--arch", "slow_r18_tiny", "--weights"])
            .arg(&w)
            .arg("--input")
            .arg(input)
            .arg("--out")
            .arg(out)
            .args(["--frames", "4", "--stride", "2", "--size", "64"])
            .args(["--batch-size", "3"])
            .args(extra))
    };
    // Four frame folders of the train list, plus one that does not exist: skipped, and named.
    let list = std::fs::read_to_string(data.join("train.txt")).unwrap();
    let with_bad = d.join("with_bad.txt");
    std::fs::write(&with_bad, format!("{list}train/nowhere/0000 64 1\n")).unwrap();
    let feats = d.join("f.npy");
    let (ok, log) = embed(
        &with_bad,
        &feats,
        &["--format", "frames", "--prefix", data.to_str().unwrap()],
    );
    assert!(
        ok && log.contains("skipped") && log.contains("nowhere"),
        "{log}"
    );
    let (shape, f) = read_npy(&feats);
    assert_eq!(shape[0], 4, "{log}");
    let dim = shape[1];
    let rows = std::fs::read_to_string(d.join("f.npy.videos.jsonl")).unwrap();
    assert_eq!(rows.lines().count(), 4);
    assert!(
        rows.lines().next().unwrap().contains("\"label\":0"),
        "{rows}"
    );
    // --strict stops at the bad one.
    let (ok, log) = embed(
        &with_bad,
        &d.join("s.npy"),
        &[
            "--format",
            "frames",
            "--prefix",
            data.to_str().unwrap(),
            "--strict",
        ],
    );
    assert!(!ok && log.contains("nowhere"), "{log}");
    // The centre clip of the first video built here from its JPEGs: 64 frames, span 4 × 2 = 8,
    // start ⌊(64 − 8)/2⌋ = 28, frames 28 + ⌊7·i/3⌋; 64² frames need no resize or crop;
    // normalised with mean 0.45 and std 0.225, laid out [1, 3, T, H, W].
    let first = list.lines().next().unwrap().split(' ').next().unwrap();
    let (mut clip, t, side) = (Vec::new(), 4usize, 64usize);
    let frames: Vec<Vec<u8>> = [28, 30, 32, 35]
        .iter()
        .map(|i| {
            let jpeg = data.join(first).join(format!("img_{:05}.jpg", i + 1));
            let (_, _, rgb) =
                rho_data::frames::read_frame_folder(jpeg.parent().unwrap(), 64, &[*i], None)
                    .unwrap();
            rgb
        })
        .collect();
    for c in 0..3 {
        for frame in &frames {
            for p in 0..side * side {
                clip.push((frame[p * 3 + c] as f32 / 255.0 - 0.45) / 0.225);
            }
        }
    }
    let npy = d.join("clip.npy");
    write_npy(&npy, &[1, 3, t, side, side], &clip);
    let one = d.join("one.npy");
    let (ok, log) = embed(&npy, &one, &[]);
    assert!(ok, "{log}");
    let (_, g) = read_npy(&one);
    let scale = g.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = f[..dim]
        .iter()
        .zip(&g)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        worst <= 1e-5 * scale.max(1e-6),
        "video vs npy features differ by {worst} (scale {scale})"
    );
    // Test views: 2 clips × 3 crops kept per view.
    let (ok, log) = embed(
        &data.join("test.txt"),
        &d.join("v.safetensors"),
        &[
            "--format",
            "frames",
            "--prefix",
            data.to_str().unwrap(),
            "--views",
            "test",
            "--clips",
            "2",
            "--per-view",
        ],
    );
    assert!(ok, "{log}");
    let bytes = std::fs::read(d.join("v.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("features").unwrap().shape(), [2, 6, dim]);
}

#[test]
fn embed_reads_a_folder_of_videos_and_a_kinetics_csv() {
    let d = tmp("embed-kinetics");
    let root = d.join("k");
    let made = rho_data::synthetic::test_videos(&root, 2, 64, 48, 15, 2.0).unwrap();
    // The Kinetics layout: `youtube_id_start_end.mp4` under `label/` folders.
    let mut csv = String::from("label,youtube_id,time_start,time_end,split\n");
    for (i, v) in made.iter().enumerate() {
        let label = ["riding a bike", "abseiling"][i];
        let folder = root.join(label.replace(' ', "_"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::rename(v, folder.join(format!("vid{i}_000010_000020.mp4"))).unwrap();
        csv.push_str(&format!("{label},vid{i},10,20,train\n"));
    }
    std::fs::write(d.join("train.csv"), csv).unwrap();
    let embed = |extra: &[&str], out: &Path| {
        run(rho()
            .args(["embed", "--arch", "slow_r18_tiny", "--random-init"])
            .args(["--frames", "4", "--stride", "2", "--size", "48", "--out"])
            .arg(out)
            .args(extra))
    };
    let out = d.join("k.npy");
    let (ok, log) = embed(
        &[
            "--input",
            d.join("train.csv").to_str().unwrap(),
            "--format",
            "kinetics",
            "--prefix",
            root.to_str().unwrap(),
            "--class-folders",
        ],
        &out,
    );
    assert!(ok, "{log}");
    assert_eq!(read_npy(&out).0[0], 2);
    let rows = std::fs::read_to_string(d.join("k.npy.videos.jsonl")).unwrap();
    assert!(
        rows.contains("\"class\":\"abseiling\"") && rows.contains("vid0_000010_000020.mp4"),
        "{rows}"
    );
    // A folder of class folders, and a single file.
    let (ok, log) = embed(&["--input", root.to_str().unwrap()], &d.join("f.npy"));
    assert!(ok && read_npy(&d.join("f.npy")).0[0] == 2, "{log}");
    let one = root.join("abseiling/vid1_000010_000020.mp4");
    let (ok, log) = embed(
        &["--input", one.to_str().unwrap(), "--views", "test"],
        &d.join("o.npy"),
    );
    assert!(ok && read_npy(&d.join("o.npy")).0 == [1, 64], "{log}");
}
