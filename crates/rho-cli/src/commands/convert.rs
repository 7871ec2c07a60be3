//! `rho convert`: weights from one naming and format to `.safetensors` in another.

use std::path::PathBuf;

use anyhow::{bail, Result};
use burn::tensor::backend::Backend;
use clap::Args;
use rho_model::weights::{save_safetensors, Naming};

use crate::arch::{build, WeightsArgs};

#[derive(Args, Debug)]
pub struct ConvertArgs {
    /// Input weights (.safetensors, or a PyTorch .pyth/.pt/.pth checkpoint).
    pub input: PathBuf,
    /// Output .safetensors.
    pub output: PathBuf,
    /// Naming of the output.
    #[arg(long)]
    pub naming: Naming,
    /// Naming of the input (detected when omitted).
    #[arg(long)]
    pub from: Option<Naming>,
    /// Architecture the weights belong to.
    #[arg(long, default_value = "slow_r50")]
    pub arch: String,
    /// Drop a missing or unusable head (e.g. an SSL projection MLP) instead of failing.
    #[arg(long)]
    pub allow_partial: bool,
    /// Read weights holding NaN or infinite values (listed in a warning) instead of refusing them.
    #[arg(long)]
    pub allow_non_finite: bool,
}

pub fn run<B: Backend>(a: &ConvertArgs, device: B::Device) -> Result<()> {
    if a.output.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!("the output {} must end in .safetensors", a.output.display());
    }
    let model = build::<B>(
        &a.arch,
        WeightsArgs {
            path: Some(&a.input),
            naming: a.from,
            allow_partial: a.allow_partial,
            num_classes: None,
            non_finite: crate::arch::non_finite(a.allow_non_finite),
        },
        &device,
    )?;
    save_safetensors(&model, &a.output, a.naming)?;
    eprintln!("wrote {} ({} naming)", a.output.display(), a.naming);
    Ok(())
}
