//! A training-memory estimate, checked before the first step so that a run that cannot fit is
//! refused in seconds rather than killed by the OS (or by CUDA) minutes later.
//!
//! Activations dominate: autodiff keeps about [`SAVED_PER_UNIT`] tensors of each conv+BN unit's
//! output size (the conv output for BN's backward, the normalised values, the ReLU output), for
//! every clip of a micro-batch, through the online network and (without gradients) the target.
//! Parameters cost weights, gradients and momentum, plus a momentum encoder where there is one.

use crate::recipe::Recipe;

/// Tensors of a unit's output size that autodiff keeps, calibrated on the CPU backend: ρBYOL
/// slow_r50, 4 videos × 2 clips of 8×112², measured peak RSS 2.9 GiB (`/usr/bin/time -v rho
/// pretrain …`), estimated 3.2 GiB with this value (4.7 GiB with 4).
pub const SAVED_PER_UNIT: f64 = 2.5;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryEstimate {
    pub activation_bytes: f64,
    pub parameter_bytes: f64,
}

impl MemoryEstimate {
    pub fn total(&self) -> f64 {
        self.activation_bytes + self.parameter_bytes
    }
}

/// The estimate for one device of `world` sharing the recipe's global batch.
pub fn estimate_per_device(
    recipe: &Recipe,
    world: usize,
) -> Result<MemoryEstimate, rho_model::ModelError> {
    let mut shard = recipe.clone();
    shard.batch /= world.max(1);
    estimate(&shard)
}

/// The estimate for one training step of `recipe` on one device (f32).
pub fn estimate(recipe: &Recipe) -> Result<MemoryEstimate, rho_model::ModelError> {
    let cfg = rho_model::ResNet3dConfig::preset(&recipe.model.arch)?;
    let d = &recipe.data;
    let views = d.rho.max(2) as f64;
    let micro = (recipe.batch / recipe.optim.accumulation.max(1)) as f64;
    let per_clip = cfg.activation_elements(d.frames, d.crop) as f64;
    let activation_bytes = 4.0 * SAVED_PER_UNIT * per_clip * micro * views;
    // Parameters: count the backbone's by its layer widths (weights, gradients, momentum; ×1.5
    // for the projection/predictor heads and a momentum encoder's copy).
    let mut params = 0f64;
    let mut cin = cfg.stem.width;
    params += (3 * cfg.stem.width * cfg.stem.kernel.iter().product::<usize>()) as f64;
    for st in &cfg.stages {
        for _ in 0..st.depth {
            params += match cfg.block {
                rho_model::BlockKind::Bottleneck => {
                    (cin * st.inner * st.temporal_kernel
                        + st.inner * st.inner * 9
                        + st.inner * st.out) as f64
                }
                rho_model::BlockKind::Basic => {
                    (cin * st.out * 9 * st.temporal_kernel + st.out * st.out * 9) as f64
                }
            };
            cin = st.out;
        }
    }
    let copies = match recipe.method.kind {
        rho_objectives::MethodKind::Moco | rho_objectives::MethodKind::Byol => 4.0,
        _ => 3.0,
    };
    Ok(MemoryEstimate {
        activation_bytes,
        parameter_bytes: 4.0 * params * copies * 1.5,
    })
}

/// Bytes of memory the OS says are available (Linux `MemAvailable`), for CPU backends.
pub fn available_host_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// "1.4 GiB", or "310 MiB" below a GiB.
pub fn gib(bytes: f64) -> String {
    let g = bytes / (1u64 << 30) as f64;
    if g >= 1.0 {
        format!("{g:.1} GiB")
    } else {
        format!("{:.0} MiB", bytes / (1u64 << 20) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(arch: &str, batch: usize, frames: usize, crop: usize) -> Recipe {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../configs/byol_slow_r50_8x8_k400.toml"
        ))
        .unwrap();
        Recipe::parse(
            &text,
            "t",
            &[
                format!("model.arch=\"{arch}\""),
                format!("batch={batch}"),
                format!("data.frames={frames}"),
                format!("data.crop={crop}"),
            ],
        )
        .unwrap()
    }

    #[test]
    fn slow_r50_activation_count_by_hand() {
        // Stem at 8×112² (stride 1,2,2) with 64 channels, then the 56² max-pool: the first two
        // terms of the sum, written out.
        let c = rho_model::ResNet3dConfig::preset("slow_r50").unwrap();
        let stem = 64 * 8 * 112 * 112 + 64 * 8 * 56 * 56;
        let res2_block1 =
            64 * 8 * 56 * 56 + 64 * 8 * 56 * 56 + 256 * 8 * 56 * 56 + 2 * 256 * 8 * 56 * 56;
        let total = c.activation_elements(8, 224);
        assert!(total > stem + res2_block1);
        // Memory grows linearly with the clip's pixels.
        let half = c.activation_elements(8, 112);
        assert!(
            (total as f64 / half as f64 - 4.0).abs() < 0.3,
            "{total} {half}"
        );
    }

    #[test]
    fn the_estimate_is_in_the_range_of_measured_training() {
        // PyTorch measured 5.6 GiB peak for a supervised slow_r50 step on 8 clips of 8×224²
        // (scripts/bench_model.py on an H100): ρBYOL's 8 videos × 2 clips is twice the clips.
        let e = estimate(&recipe("slow_r50", 8, 8, 224)).unwrap();
        let gib = e.total() / (1u64 << 30) as f64;
        assert!((8.0..40.0).contains(&gib), "{gib:.1} GiB");
        // A 64-GPU global batch of 512 on one device cannot fit any card.
        assert!(estimate(&recipe("slow_r50", 512, 8, 224)).unwrap().total() > 400e9);
    }
}
