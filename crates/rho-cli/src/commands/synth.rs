//! `rho synth --out DIR`: a labelled synthetic video dataset (JPEG frame folders and mmaction
//! lists) whose class is an object's shape and texture while colour, lighting, background,
//! position and occluders drift inside each video (see `rho_data::synth`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use rho_data::synth::{generate, SynthConfig};

#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output folder (gets train/, test/, train.txt, test.txt, classes.txt).
    #[arg(long, default_value = "data/synth")]
    pub out: PathBuf,
    /// Number of classes (up to 60 shape × texture pairs).
    #[arg(long, default_value_t = 8)]
    pub classes: usize,
    #[arg(long, default_value_t = 24)]
    pub train_per_class: usize,
    #[arg(long, default_value_t = 8)]
    pub test_per_class: usize,
    /// Frames per video (read at 30 fps).
    #[arg(long, default_value_t = 64)]
    pub frames: usize,
    /// Frame side in pixels.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SynthArgs {
    pub fn config(&self) -> SynthConfig {
        SynthConfig {
            classes: self.classes,
            train_per_class: self.train_per_class,
            test_per_class: self.test_per_class,
            frames: self.frames,
            size: self.size,
            seed: self.seed,
            ..SynthConfig::default()
        }
    }
}

pub fn run(a: &SynthArgs) -> Result<()> {
    let t0 = std::time::Instant::now();
    let d = generate(&a.config(), &a.out)?;
    eprintln!(
        "{} videos of {} classes in {:.1} s: {} and {} (mmaction frame lists; read with --format frames --prefix {})",
        d.videos,
        d.classes.len(),
        t0.elapsed().as_secs_f64(),
        d.train_list.display(),
        d.test_list.display(),
        d.root.display()
    );
    Ok(())
}
