//! Shared by the engine and data-parallel tests: generated videos and a tiny recipe.

use std::path::{Path, PathBuf};

use rho_train::Recipe;

/// Eight short generated videos in a folder of this process (`tag` keeps test files apart).
pub fn videos(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rho-{tag}-{}", std::process::id()));
    rho_data::synthetic::test_videos(&dir, 8, 64, 48, 15, 2.0).unwrap();
    dir
}

/// A tiny Slow network on 32² clips, batch 4: `extra` goes into `[method]`.
pub fn recipe(kind: &str, optimizer: &str, extra: &str, index: &Path) -> Recipe {
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
