//! `rho make-clip`: a random normalised clip as `.npy`, for smoke tests and benchmarks.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::npy;

#[derive(Args, Debug)]
pub struct MakeClipArgs {
    /// Shape N,C,T,H,W
    #[arg(long, default_value = "1,3,8,224,224", value_delimiter = ',')]
    pub shape: Vec<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &MakeClipArgs) -> Result<()> {
    if a.shape.len() != 5 || a.shape.contains(&0) {
        bail!(
            "--shape must be five positive sizes N,C,T,H,W (got {:?})",
            a.shape
        );
    }
    let n: usize = a.shape.iter().product();
    // SplitMix64 + Box-Muller: deterministic N(0, 1) without a dependency.
    let mut state = a.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let data: Vec<f32> = (0..n)
        .map(|_| {
            let (u1, u2) = (next().max(1e-12), next());
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect();
    npy::write(&a.out, &a.shape, &data)?;
    eprintln!("wrote a {:?} clip to {}", a.shape, a.out.display());
    Ok(())
}
