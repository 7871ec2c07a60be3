//! Hostile input and faults against the `rho` binary: each case ends in a clear error that names
//! the thing and the fix (never a panic, exit 101, or an abort, 134), or in correct handling.

use std::path::{Path, PathBuf};
use std::process::Command;

fn rho() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rho"))
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rho-hostile-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Exit code and stdout+stderr; a panic or an abort fails the test whatever the case expects.
fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(![101, 134, -1].contains(&code), "crashed ({code}):\n{log}");
    (code, log)
}

/// A tiny ρSimCLR recipe on 4 generated videos, writing into `out`.
fn recipe(d: &Path, out: &Path) -> PathBuf {
    rho_data::synthetic::test_videos(d, 4, 64, 48, 15, 2.0).unwrap();
    let text = format!(
        "name = \"t\"\nbatch = 2\nepochs = 20\noutput = \"{}\"\n[model]\narch = \"slow_r18_tiny\"\n[method]\nkind = \"simclr\"\n[data]\nindex = \"{}\"\nrho = 2\nframes = 4\nstride = 2\ncrop = 32\nshort_side = 40\nworkers = 1\n[optim]\noptimizer = \"lars\"\nbase_lr = 0.05\nweight_decay = 1e-4\nreference_batch = 2\nwarmup_epochs = 0.5\nwarmup_start_lr = 0.001\n",
        out.display(),
        d.display()
    );
    let p = d.join("r.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn pretrain(cfg: &Path, extra: &[&str]) -> (i32, String) {
    run(rho().args(["pretrain", "--config"]).arg(cfg).args(extra))
}

#[test]
fn a_second_run_into_a_busy_output_folder_is_refused_naming_the_holder() {
    let d = tmp("lock");
    let out = d.join("run");
    let cfg = recipe(&d, &out);
    // This process holds the folder, as a running `rho pretrain` would.
    let _held = rho_train::run_lock::RunLock::acquire(&out).unwrap();
    let (code, log) = pretrain(&cfg, &["--max-steps", "1"]);
    assert_ne!(code, 0);
    let me = format!("pid {}", std::process::id());
    assert!(
        log.contains("in use by another rho run") && log.contains(&me),
        "{log}"
    );
    assert!(
        !out.join("metrics.jsonl").exists(),
        "the refused run wrote metrics"
    );
}

#[test]
fn resuming_checks_the_recipe_and_falls_back_to_the_newest_good_checkpoint() {
    let d = tmp("resume");
    let out = d.join("run");
    let cfg = recipe(&d, &out);
    let (code, log) = pretrain(&cfg, &["--max-steps", "4", "--checkpoint-every", "2"]);
    assert_eq!(code, 0, "{log}");
    // Another network: refused, both values named.
    let (code, log) = pretrain(&cfg, &["--resume", "--set", "model.arch=r3d_18_tiny"]);
    assert!(
        code != 0 && log.contains("slow_r18_tiny") && log.contains("r3d_18_tiny"),
        "{log}"
    );
    // Another batch: refused unless allowed; allowed, the run card keeps both cards.
    let changed = ["--resume", "--max-steps", "5", "--set", "data.rho=3"];
    let (code, log) = pretrain(&cfg, &changed);
    assert!(
        code != 0 && log.contains("data.rho: 2 → 3") && log.contains("--allow-recipe-change"),
        "{log}"
    );
    let (code, log) = pretrain(&cfg, &[&changed[..], &["--allow-recipe-change"]].concat());
    assert_eq!(code, 0, "{log}");
    let card = std::fs::read_to_string(out.join("run_card.toml")).unwrap();
    assert!(card.contains("# recipe change: data.rho: 2 → 3"), "{card}");
    assert!(
        card.contains("# rho = 2") && card.contains("\nrho = 3"),
        "{card}"
    );
    // A corrupt newest checkpoint: `--resume` says so and takes the one before.
    let newest = out.join("ckpt_00000004.rho");
    let mut bytes = std::fs::read(&newest).unwrap();
    bytes[20] ^= 0x40; // inside the header
    std::fs::write(&newest, &bytes).unwrap();
    let (code, log) = pretrain(
        &cfg,
        &["--resume", "--max-steps", "3", "--allow-recipe-change"],
    );
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("skipping") && log.contains("ckpt_00000004") && log.contains("ckpt_00000002"),
        "{log}"
    );
}

#[test]
fn zero_sizes_and_a_disabled_checkpoint_interval_are_refused() {
    let d = tmp("zeros");
    let cfg = recipe(&d, &d.join("run"));
    let (code, log) = pretrain(&cfg, &["--checkpoint-every", "0"]);
    assert!(code != 0 && log.contains("checkpoint-every"), "{log}");
    for (key, name) in [
        ("data.short_side=0", "short_side"),
        ("data.workers=0", "workers"),
    ] {
        let (code, log) = pretrain(&cfg, &["--set", key]);
        assert!(code != 0 && log.contains(name), "{key}: {log}");
    }
}

#[test]
fn fifos_symlink_loops_and_checkpoints_given_as_weights_get_clear_errors() {
    let d = tmp("files");
    let cfg = recipe(&d, &d.join("run"));
    // A FIFO in the index: refused before any decoding (opening it would block), promptly.
    let odd = tmp("files-odd"); // outside the recipe's video folder
    let fifo = odd.join("fifo.mp4");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let lst = odd.join("list.txt");
    let good = d.join("v0.mp4");
    std::fs::write(
        &lst,
        format!(
            "{} 0\n{} 1\n{} 0\n",
            good.display(),
            fifo.display(),
            good.display()
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, log) = pretrain(
        &cfg,
        &[
            "--set",
            &format!("data.index=\"{}\"", lst.display()),
            "--set",
            "data.format=\"list\"",
        ],
    );
    assert!(
        code != 0 && log.contains("a FIFO") && log.contains("fifo.mp4"),
        "{log}"
    );
    assert!(started.elapsed().as_secs() < 30);
    // A symlink loop is named as one, not as a missing file.
    let looped = odd.join("loop.mp4");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    std::fs::write(
        &lst,
        format!("{} 0\n{} 1\n", good.display(), looped.display()),
    )
    .unwrap();
    let (code, log) = pretrain(
        &cfg,
        &[
            "--set",
            &format!("data.index=\"{}\"", lst.display()),
            "--set",
            "data.format=\"list\"",
        ],
    );
    assert!(code != 0 && log.contains("symlink loop"), "{log}");
    // A checkpoint given where a weights file belongs.
    let (code, log) = pretrain(&cfg, &["--max-steps", "1", "--checkpoint-every", "1"]);
    assert_eq!(code, 0, "{log}");
    let ck = d.join("run/ckpt_00000001.rho");
    let out = d.join("w.safetensors");
    let (code, log) = run(rho().args(["convert"]).arg(&ck).arg(&out).args([
        "--naming",
        "rho",
        "--arch",
        "slow_r18_tiny",
    ]));
    assert!(
        code != 0 && log.contains("rho training checkpoint") && log.contains("rho eval"),
        "{log}"
    );
    // weight_decay = nan names the key, not the learning rate.
    let (code, log) = pretrain(&cfg, &["--set", "optim.weight_decay=nan"]);
    assert!(code != 0 && log.contains("optim.weight_decay"), "{log}");
    // A FIFO given as the recipe, the index, the weights or the clips: named, never read.
    let pipe = odd.join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap()
        .success());
    let started = std::time::Instant::now();
    let (code, log) = pretrain(&pipe, &[]);
    assert!(
        code != 0 && log.contains("FIFO, not a recipe file"),
        "{log}"
    );
    let (code, log) = run(rho().args(["data", "check"]).arg(&pipe));
    assert!(
        code != 0 && log.contains("FIFO, not an index file"),
        "{log}"
    );
    let (code, log) = run(rho()
        .args(["convert", "--arch", "slow_r18_tiny", "--naming", "rho"])
        .arg(&pipe)
        .arg(&out));
    assert!(code != 0 && log.contains("not a regular file"), "{log}");
    let (code, log) = run(rho()
        .args([
            "embed",
            "--arch",
            "slow_r18_tiny",
            "--random-init",
            "--input",
        ])
        .arg(&pipe)
        .arg("--out")
        .arg(odd.join("f.npy")));
    assert!(
        code != 0 && log.contains("FIFO, not an index file"),
        "{log}"
    );
    let fifo_npy = odd.join("pipe.npy");
    assert!(Command::new("mkfifo")
        .arg(&fifo_npy)
        .status()
        .unwrap()
        .success());
    let (code, log) = run(rho()
        .args([
            "embed",
            "--arch",
            "slow_r18_tiny",
            "--random-init",
            "--input",
        ])
        .arg(&fifo_npy)
        .arg("--out")
        .arg(odd.join("f.npy")));
    assert!(code != 0 && log.contains("FIFO, not a .npy file"), "{log}");
    assert!(started.elapsed().as_secs() < 30);
}

#[test]
fn an_npy_whose_shape_overflows_is_refused() {
    let d = tmp("npy");
    let header =
        "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 3, 8, 8), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + header.len() + 1) % 64;
    let text = format!("{header}{}\n", " ".repeat(pad));
    bytes.extend((text.len() as u16).to_le_bytes());
    bytes.extend(text.as_bytes());
    bytes.extend([0u8; 64]);
    let npy = d.join("huge.npy");
    std::fs::write(&npy, bytes).unwrap();
    let (code, log) = run(rho()
        .args([
            "embed",
            "--arch",
            "slow_r18_tiny",
            "--random-init",
            "--input",
        ])
        .arg(&npy)
        .arg("--out")
        .arg(d.join("f.npy")));
    assert!(code != 0 && log.contains("huge.npy"), "{log}");
}

#[test]
fn a_bad_override_is_named_as_the_set_it_came_from() {
    let d = tmp("set");
    let cfg = recipe(&d, &d.join("run"));
    let (code, log) = pretrain(&cfg, &["--set", "data.rho=3", "--set", "batch=\"four\""]);
    assert!(
        code != 0 && log.contains("with --set batch=\"four\""),
        "{log}"
    );
}

#[test]
fn a_resumed_run_logs_each_step_once() {
    let d = tmp("relog");
    let out = d.join("run");
    let cfg = recipe(&d, &out);
    // Four steps, a checkpoint after two: as if killed after step 3, with 2 and 3 logged.
    let (code, log) = pretrain(
        &cfg,
        &["--max-steps", "4", "--checkpoint-every", "2", "--keep", "5"],
    );
    assert_eq!(code, 0, "{log}");
    let ck = out.join("ckpt_00000002.rho");
    let (code, log) = run(rho()
        .args(["pretrain", "--config"])
        .arg(&cfg)
        .arg("--resume")
        .arg(&ck)
        .args(["--max-steps", "5"]));
    assert_eq!(code, 0, "{log}");
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("step").and_then(|s| s.as_u64()))
        .collect();
    assert_eq!(steps, [0, 1, 2, 3, 4], "{metrics}");
    // The TensorBoard events too: each scalar once per step, the resumed run's values for 2..4.
    let events =
        rho_train::tensorboard::read_scalars(&out.join(rho_train::tensorboard::FILE_NAME)).unwrap();
    let loss: Vec<i64> = events
        .iter()
        .filter(|e| e.tag == "train/loss")
        .map(|e| e.step)
        .collect();
    assert_eq!(loss, [0, 1, 2, 3, 4]);
    for tag in [
        "train/lr",
        "train/pos_sim",
        "perf/clips_per_s",
        "perf/data_wait_share",
    ] {
        assert_eq!(events.iter().filter(|e| e.tag == tag).count(), 5, "{tag}");
    }
}

#[test]
fn data_check_names_fifos_one_frame_videos_and_odd_names_promptly() {
    let d = tmp("doctor");
    let class = d.join("a");
    rho_data::synthetic::test_videos(&class, 2, 64, 48, 15, 2.0).unwrap();
    let one = tmp("doctor-one");
    let short = rho_data::synthetic::test_videos(&one, 1, 64, 48, 15, 0.05).unwrap();
    std::fs::copy(&short[0], class.join("one_frame.mp4")).unwrap();
    std::fs::write(class.join("bad\nname.mp4"), b"garbage").unwrap();
    let q = d.join("quarantine.txt");
    let (code, log) = run(rho()
        .args(["data", "check"])
        .arg(&d)
        .arg("--quarantine")
        .arg(&q));
    assert_eq!(code, 0, "{log}");
    let bad = std::fs::read_to_string(&q).unwrap();
    assert_eq!(bad.lines().count(), 2, "{bad}");
    for name in ["one_frame.mp4", "bad\\nname.mp4"] {
        assert!(bad.contains(name), "{name} not quarantined: {bad}");
    }
    // A FIFO in a list: named within seconds instead of blocking the scan.
    let odd = tmp("doctor-fifo");
    let fifo = odd.join("pipe.mp4");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let list = odd.join("list.txt");
    let v0 = class.join("v0.mp4");
    std::fs::write(&list, format!("{} 0\n{} 1\n", v0.display(), fifo.display())).unwrap();
    let started = std::time::Instant::now();
    let (code, log) = run(rho()
        .args(["data", "check"])
        .arg(&list)
        .args(["--format", "list"]));
    assert_eq!(code, 0, "{log}");
    assert!(started.elapsed().as_secs() < 30, "the scan hung");
    assert!(log.contains("is a FIFO"), "{log}");
    // A FIFO posing as a frame of a frame folder: named too, by the doctor and by the loader's
    // decoder (the same frame reader), instead of blocking.
    let frames = odd.join("frames/v");
    std::fs::create_dir_all(&frames).unwrap();
    assert!(Command::new("mkfifo")
        .arg(frames.join("img_00001.jpg"))
        .status()
        .unwrap()
        .success());
    std::fs::write(frames.join("img_00002.jpg"), b"garbage").unwrap();
    let list = odd.join("frames.txt");
    std::fs::write(&list, format!("{} 2 0\n", frames.display())).unwrap();
    let started = std::time::Instant::now();
    let (code, log) = run(rho()
        .args(["data", "check"])
        .arg(&list)
        .args(["--format", "frames"]));
    assert_eq!(code, 0, "{log}");
    assert!(started.elapsed().as_secs() < 30, "the scan hung");
    assert!(log.contains("img_00001.jpg is a FIFO, not a JPEG"), "{log}");
}

#[test]
fn after_a_fallback_the_rotation_keeps_the_resumed_runs_checkpoints_and_auto_never_restarts_silently(
) {
    let d = tmp("rotate");
    let out = d.join("run");
    let cfg = recipe(&d, &out);
    let (code, log) = pretrain(&cfg, &["--max-steps", "4", "--checkpoint-every", "2"]);
    assert_eq!(code, 0, "{log}");
    let card = std::fs::read_to_string(out.join("run_card.toml")).unwrap();
    std::fs::write(out.join("ckpt_00000004.rho"), b"RHOCKPT2 but cut short").unwrap();
    // Resumed from step 2 past the corrupt newest, keeping one: step 3's checkpoint survives.
    let (code, log) = pretrain(
        &cfg,
        &[
            "--resume",
            "--max-steps",
            "3",
            "--checkpoint-every",
            "1",
            "--keep",
            "1",
        ],
    );
    assert_eq!(code, 0, "{log}");
    assert!(out.join("ckpt_00000003.rho").exists(), "{log}");
    // A resume the trainer refuses (here: a listed video is gone) leaves the files as they were.
    let card = std::fs::read_to_string(out.join("run_card.toml")).unwrap_or(card);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    std::fs::rename(d.join("v0.mp4"), d.join("v0.moved")).unwrap();
    let list = d.join("list.txt");
    std::fs::write(
        &list,
        format!(
            "{} 0\n{} 1\n",
            d.join("v0.mp4").display(),
            d.join("v1.mp4").display()
        ),
    )
    .unwrap();
    let set = format!("data.index=\"{}\"", list.display());
    let (code, log) = pretrain(
        &cfg,
        &[
            "--resume",
            "--allow-recipe-change",
            "--set",
            &set,
            "--set",
            "data.format=\"list\"",
        ],
    );
    assert!(code != 0 && log.contains("do not exist"), "{log}");
    assert_eq!(
        std::fs::read_to_string(out.join("run_card.toml")).unwrap(),
        card
    );
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(),
        metrics
    );
    // Checkpoints that all fail to verify: `--resume auto` refuses instead of starting afresh.
    for p in std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().path()) {
        if p.extension().is_some_and(|e| e == "rho") {
            std::fs::write(&p, b"garbage").unwrap();
        }
    }
    std::fs::rename(d.join("v0.moved"), d.join("v0.mp4")).unwrap();
    let (code, log) = pretrain(&cfg, &["--resume", "auto"]);
    assert!(code != 0 && log.contains("none verifies"), "{log}");
}

#[test]
fn nan_in_weights_or_clips_is_an_error_naming_it() {
    let d = tmp("nan");
    let (w, clip) = (d.join("w.safetensors"), d.join("clip.npy"));
    let (code, log) = run(rho()
        .args(["init", "--arch", "slow_r18_tiny", "--out"])
        .arg(&w));
    assert_eq!(code, 0, "{log}");
    let (code, log) = run(rho()
        .args(["make-clip", "--shape", "1,3,4,32,32", "--out"])
        .arg(&clip));
    assert_eq!(code, 0, "{log}");
    let embed = |w: &Path, clip: &Path| {
        run(rho()
            .args(["embed", "--arch", "slow_r18_tiny", "--weights"])
            .arg(w)
            .arg("--input")
            .arg(clip)
            .arg("--out")
            .arg(d.join("f.npy")))
    };
    assert_eq!(embed(&w, &clip).0, 0);
    // One float of each file becomes NaN: the clip's last value, a weight tensor's first.
    let (bad_w, bad_clip) = (d.join("nan.safetensors"), d.join("nan.npy"));
    let mut b = std::fs::read(&clip).unwrap();
    let n = b.len();
    b[n - 4..].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&bad_clip, b).unwrap();
    let mut b = std::fs::read(&w).unwrap();
    let header_len = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&b[8..8 + header_len]).unwrap();
    let start = header
        .as_object()
        .unwrap()
        .values()
        .find(|t| t["dtype"] == "F32")
        .map(|t| t["data_offsets"][0].as_u64().unwrap() as usize)
        .unwrap();
    let at = 8 + header_len + start;
    b[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(&bad_w, b).unwrap();
    let (code, log) = embed(&bad_w, &clip);
    assert!(
        code != 0 && log.contains("NaN") && log.contains("tensor `"),
        "{log}"
    );
    let (code, log) = embed(&w, &bad_clip);
    assert!(
        code != 0 && log.contains("nan.npy") && log.contains("NaN"),
        "{log}"
    );
    // --allow-non-finite converts such a file, naming the tensor in a warning.
    let (code, log) = run(rho()
        .args([
            "convert",
            "--arch",
            "slow_r18_tiny",
            "--naming",
            "pytorchvideo",
        ])
        .arg(&bad_w)
        .arg(d.join("out.safetensors"))
        .arg("--allow-non-finite"));
    assert!(
        code == 0 && log.contains("warning") && log.contains("NaN"),
        "{log}"
    );
}

#[test]
fn a_pickle_nested_deeper_than_any_checkpoint_is_refused_by_embed_and_convert() {
    let d = tmp("deep-pickle");
    // A legacy torch.save layout whose object is 200 000 nested lists.
    let mut f = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02M\xe9\x03.\x80\x02}q\x00.\x80\x02".to_vec();
    f.extend(std::iter::repeat_n(b']', 200_000));
    f.extend(std::iter::repeat_n(b'a', 199_999));
    f.push(b'.');
    let pth = d.join("deep.pth");
    std::fs::write(&pth, f).unwrap();
    let (code, log) = run(rho()
        .args([
            "convert",
            "--arch",
            "slow_r18_tiny",
            "--naming",
            "pytorchvideo",
        ])
        .arg(&pth)
        .arg(d.join("o.safetensors")));
    assert!(
        code != 0 && log.contains("deep.pth") && log.contains("nests deeper"),
        "{log}"
    );
    let clip = d.join("clip.npy");
    let (code, log) = run(rho()
        .args(["make-clip", "--shape", "1,3,4,32,32", "--out"])
        .arg(&clip));
    assert_eq!(code, 0, "{log}");
    let (code, log) = run(rho()
        .args(["embed", "--arch", "slow_r18_tiny", "--weights"])
        .arg(&pth)
        .arg("--input")
        .arg(&clip)
        .arg("--out")
        .arg(d.join("f.npy")));
    assert!(code != 0 && log.contains("nests deeper"), "{log}");
}

#[test]
fn a_clip_longer_than_every_frame_folder_is_refused_before_training() {
    let d = tmp("span");
    let data = d.join("synth");
    let (code, log) = run(rho()
        .args([
            "synth",
            "--classes",
            "2",
            "--train-per-class",
            "2",
            "--test-per-class",
            "1",
            "--out",
        ])
        .arg(&data));
    assert_eq!(code, 0, "{log}");
    let cfg = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/tiny_byol_cpu.toml");
    let started = std::time::Instant::now();
    let (code, log) = run(rho().args(["pretrain", "--config"]).arg(&cfg).args([
        "--set",
        &format!("data.index=\"{}\"", data.join("train.txt").display()),
        "--set",
        &format!("data.prefix=\"{}\"", data.display()),
        "--set",
        &format!("output=\"{}\"", d.join("run").display()),
        "--set",
        "data.frames=1000",
    ]));
    assert!(
        code != 0 && log.contains("spans") && log.contains("frames"),
        "{log}"
    );
    assert!(started.elapsed().as_secs() < 60);
}

#[test]
fn data_check_full_quarantines_frame_folders_with_empty_or_garbage_jpegs() {
    let d = tmp("jpegs");
    let data = d.join("synth");
    let (code, log) = run(rho()
        .args(["synth", "--classes", "2", "--train-per-class", "2"])
        .args(["--test-per-class", "1", "--out"])
        .arg(&data));
    assert_eq!(code, 0, "{log}");
    // A middle frame of folder 0 emptied, one of folder 1 overwritten with noise; the rest intact.
    let folder = |i: usize| {
        let line = std::fs::read_to_string(data.join("train.txt")).unwrap();
        data.join(line.lines().nth(i).unwrap().split(' ').next().unwrap())
    };
    std::fs::write(folder(0).join("img_00010.jpg"), b"").unwrap();
    std::fs::write(folder(1).join("img_00020.jpg"), [0x5au8; 900]).unwrap();
    let q = d.join("quarantine.txt");
    let check = |full: bool| {
        let mut c = rho();
        c.args(["data", "check"])
            .arg(data.join("train.txt"))
            .args(["--format", "frames", "--prefix"])
            .arg(&data)
            .arg("--quarantine")
            .arg(&q);
        if full {
            c.arg("--full");
        }
        let (code, log) = run(&mut c);
        assert_eq!(code, 0, "{log}");
        std::fs::read_to_string(&q).unwrap_or_default()
    };
    // Without --full only the first and last frames are read: both folders pass.
    assert_eq!(check(false).lines().count(), 0);
    let bad = check(true);
    assert_eq!(bad.lines().count(), 2, "{bad}");
    for i in [0, 1] {
        let name = folder(i).display().to_string();
        assert!(bad.contains(&name), "{name} not quarantined: {bad}");
    }
}
