//! `rho init`: a freshly initialised backbone (He init) written as `.safetensors`.

use std::path::PathBuf;

use anyhow::Result;
use burn::tensor::backend::Backend;
use clap::Args;
use rho_model::weights::{save_safetensors, Naming};
use rho_model::ResNet3dConfig;

#[derive(Args, Debug)]
pub struct InitArgs {
    #[arg(long, default_value = "slow_r50")]
    pub arch: String,
    /// Add a classification head with this many classes.
    #[arg(long)]
    pub num_classes: Option<usize>,
    #[arg(long, default_value = "rho")]
    pub naming: Naming,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run<B: Backend>(a: &InitArgs, device: B::Device) -> Result<()> {
    B::seed(&device, a.seed);
    let model = ResNet3dConfig::preset(&a.arch)?
        .with_num_classes(a.num_classes)
        .try_init::<B>(&device)?;
    save_safetensors(&model, &a.out, a.naming)?;
    eprintln!(
        "wrote {} ({} parameters, {} naming) to {}",
        a.arch,
        model.num_params(),
        a.naming,
        a.out.display()
    );
    Ok(())
}
