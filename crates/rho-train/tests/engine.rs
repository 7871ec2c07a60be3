//! The loop end to end on generated videos: every method trains a few steps on the CPU.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::backend::{Autodiff, Flex};
use rho_train::{pretrain, Recipe};

type AB = Autodiff<Flex>;

fn videos() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rho-engine-{}", std::process::id()));
    for class in 0..2 {
        let d = dir.join(format!("c{class}"));
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..4 {
            let out = d.join(format!("v{i}.mp4"));
            if out.exists() {
                continue;
            }
            let src = format!("testsrc2=s=64x48:r=15:d=2,hue=h={}", (class * 4 + i) * 40);
            let st = Command::new("ffmpeg")
                .args([
                    "-hide_banner",
                    "-loglevel",
                    "error",
                    "-y",
                    "-f",
                    "lavfi",
                    "-i",
                    &src,
                ])
                .args([
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-g",
                    "8",
                    "-pix_fmt",
                    "yuv420p",
                ])
                .arg(&out)
                .status()
                .expect("the ffmpeg CLI is needed (scripts/setup.sh installs it)");
            assert!(st.success());
        }
    }
    dir
}

fn recipe(kind: &str, optimizer: &str, extra: &str, index: &Path) -> Recipe {
    let text = format!(
        r#"
name = "test"
batch = 4
epochs = 4
output = "unused"
[model]
arch = "slow_r18_tiny"
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
warmup_start_lr = 0.001
"#,
        index.display()
    );
    Recipe::parse(&text, "test", &[]).unwrap()
}

#[test]
fn every_method_trains_on_generated_videos() {
    let index = videos();
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
        // The epoch advances by 1/iterations per step (8 videos / batch 4 = 2 per epoch).
        assert!(
            (logs[3].epoch - 1.5).abs() < 1e-9,
            "{kind}: {}",
            logs[3].epoch
        );
        // MoCo does not step the optimiser until its queue (8) has been filled (8 / 4 = 2 steps).
        let skipped: Vec<bool> = logs.iter().map(|l| l.skipped).collect();
        if kind == "moco" {
            assert_eq!(skipped, [true, true, false, false]);
        } else {
            assert!(skipped.iter().all(|s| !s));
        }
        assert!(net.backbone.feature_dim() > 0);
    }
}
