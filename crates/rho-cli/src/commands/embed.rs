//! `rho embed`: pooled features (and logits) of clips stored as a float32 `.npy`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use clap::Args;

use crate::arch::{build, WeightsArgs};
use crate::npy;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// Backbone preset (see `rho models`).
    #[arg(long, default_value = "slow_r50")]
    pub arch: String,
    /// Weights (.safetensors, .pyth/.pt/.pth); their naming is detected unless --naming is given.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Run without weights, on a randomly initialised network (for smoke tests).
    #[arg(long, conflicts_with = "weights")]
    pub random_init: bool,
    #[arg(long)]
    pub naming: Option<rho_model::weights::Naming>,
    /// Accept a missing or different classification head.
    #[arg(long)]
    pub allow_partial: bool,
    /// Read weights holding NaN or infinite values (listed in a warning) instead of refusing them.
    #[arg(long)]
    pub allow_non_finite: bool,
    /// Input clips, float32 [N, 3, T, H, W], already normalised.
    #[arg(long)]
    pub input: PathBuf,
    /// Output features, float32 [N, C].
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the head's logits [N, K] (the weights must have a head).
    #[arg(long)]
    pub logits: Option<PathBuf>,
    /// Clips per forward pass (bounds memory).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
}

pub fn run<B: Backend>(a: &EmbedArgs, device: B::Device) -> Result<()> {
    if a.weights.is_none() && !a.random_init {
        bail!("pass --weights FILE (or --random-init to run an untrained network)");
    }
    if a.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let clip = npy::read(&a.input)?;
    let model = build::<B>(
        &a.arch,
        WeightsArgs {
            path: a.weights.as_deref(),
            naming: a.naming,
            allow_partial: a.allow_partial,
            num_classes: None,
            non_finite: crate::arch::non_finite(a.allow_non_finite),
        },
        &device,
    )?;
    model
        .check_input(&clip.shape)
        .with_context(|| format!("input {}", a.input.display()))?;
    if a.logits.is_some() && model.head.is_none() {
        bail!("--logits needs weights with a classification head; these have none");
    }
    let n = clip.shape[0];
    let per_clip: usize = clip.shape[1..].iter().product();
    let (mut feats, mut logits) = (Vec::new(), Vec::new());
    let started = std::time::Instant::now();
    for start in (0..n).step_by(a.batch_size) {
        let end = (start + a.batch_size).min(n);
        let mut shape = clip.shape.clone();
        shape[0] = end - start;
        let data = TensorData::new(clip.data[start * per_clip..end * per_clip].to_vec(), shape);
        let x = Tensor::<B, 5>::from_data(data, &device);
        let (f, l) = model.try_forward_with_logits(x)?;
        feats.extend(
            f.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?,
        );
        if let (Some(l), true) = (l, a.logits.is_some()) {
            logits.extend(
                l.into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?,
            );
        }
    }
    let dim = feats.len() / n;
    npy::write(&a.out, &[n, dim], &feats)?;
    if let Some(p) = &a.logits {
        npy::write(p, &[n, logits.len() / n], &logits)?;
    }
    eprintln!(
        "embedded {n} clips {:?} → {} [{n}, {dim}] in {:.2}s",
        &clip.shape[1..],
        a.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
