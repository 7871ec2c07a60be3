//! Writes the first STEPS batches of a recipe's pre-training loader, the exact stream `rho
//! pretrain` trains on, so that the PyTorch reference can train on the same clips
//! (`scripts/torch_reference_pretrain.py --batches OUT`; docs/method.md, "At the demo's scale"):
//! OUT.f32 holds [STEPS, B, V, 3, T, S, S] little-endian f32, OUT.json the shape and each
//! batch's dataset indices.
//!
//!     cargo run --release -p rho-train --example dump_batches -- RECIPE STEPS OUT [k=v ...]
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use rho_data::VideoLoader;
use rho_train::engine::{load_index, loader_config};
use rho_train::Recipe;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [recipe, steps, out, overrides @ ..] = args.as_slice() else {
        return Err("usage: dump_batches RECIPE STEPS OUT [key=value ...]".into());
    };
    let recipe = Recipe::load(&PathBuf::from(recipe), overrides)?;
    let steps: usize = steps
        .parse()
        .map_err(|_| format!("STEPS must be a number, not {steps}"))?;
    let mut loader = VideoLoader::new(load_index(&recipe)?, loader_config(&recipe))?;
    let out = PathBuf::from(out);
    let mut clips = BufWriter::new(std::fs::File::create(out.with_extension("f32"))?);
    let (mut videos, mut shape) = (Vec::new(), None);
    while videos.len() < steps {
        for batch in loader.epoch() {
            let batch = batch?;
            for v in &batch.clips {
                clips.write_all(&v.to_le_bytes())?;
            }
            shape = Some(batch.shape);
            videos.push(batch.samples);
            if videos.len() == steps {
                break;
            }
        }
    }
    clips.flush()?;
    let meta = serde_json::json!({ "shape": shape, "videos": videos });
    std::fs::write(out.with_extension("json"), meta.to_string())?;
    Ok(())
}
