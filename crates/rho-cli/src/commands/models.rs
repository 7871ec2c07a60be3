//! `rho models`: the backbone presets with their sizes.

use anyhow::Result;
use burn::tensor::backend::Backend;
use rho_model::{ResNet3dConfig, PRESETS};

pub fn run<B: Backend>(device: B::Device) -> Result<()> {
    println!(
        "{:<18} {:>12} {:>9} {:>14}",
        "preset", "parameters", "features", "stride T×H×W"
    );
    for p in PRESETS {
        let cfg = ResNet3dConfig::preset(p)?;
        let model = cfg.try_init::<B>(&device)?;
        let [t, h, w] = cfg.total_stride();
        println!(
            "{:<18} {:>12} {:>9} {:>14}",
            p,
            model.num_params(),
            cfg.feature_dim(),
            format!("{t}×{h}×{w}")
        );
    }
    Ok(())
}
