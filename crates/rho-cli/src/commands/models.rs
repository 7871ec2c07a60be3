//! `rho models`: the registries: backbone presets with their sizes, methods, index formats.

use anyhow::Result;
use burn::tensor::backend::Backend;
use rho_model::ResNet3dConfig;

pub fn run<B: Backend>(device: B::Device) -> Result<()> {
    println!(
        "{:<18} {:>12} {:>9} {:>14}  description",
        "preset", "parameters", "features", "stride T×H×W"
    );
    for p in rho_model::presets::presets() {
        let cfg = ResNet3dConfig::preset(p.name)?;
        let model = cfg.try_init::<B>(&device)?;
        let [t, h, w] = cfg.total_stride();
        println!(
            "{:<18} {:>12} {:>9} {:>14}  {}",
            p.name,
            model.num_params(),
            cfg.feature_dim(),
            format!("{t}×{h}×{w}"),
            p.description
        );
    }
    println!("\n{:<18} description", "method");
    for m in rho_objectives::registry::methods() {
        println!("{:<18} {}", m.name, m.description);
    }
    println!("\n{:<18} description", "index format");
    for f in rho_data::dataset::FORMATS {
        println!("{:<18} {}", f.name, f.description);
    }
    Ok(())
}
