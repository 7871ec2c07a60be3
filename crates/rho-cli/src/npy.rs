//! Reading and writing `.npy` arrays (float32, C order), the format users script against.

use std::io::BufReader;
use std::path::Path;

use anyhow::{bail, Context, Result};
use npyz::WriterBuilder;

/// A dense float32 array.
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub fn read(path: &Path) -> Result<Array> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let npy = npyz::NpyFile::new(BufReader::new(file))
        .with_context(|| format!("{} is not a .npy file", path.display()))?;
    if npy.order() != npyz::Order::C && npy.shape().len() > 1 {
        bail!(
            "{} is in Fortran order; save it with np.ascontiguousarray",
            path.display()
        );
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let data = match descr.as_str() {
        "'<f4'" => npy.into_vec::<f32>()?,
        "'<f8'" => npy
            .into_vec::<f64>()?
            .into_iter()
            .map(|v| v as f32)
            .collect(),
        other => bail!(
            "{} holds dtype {other}; rho needs float32 (x.astype(np.float32))",
            path.display()
        ),
    };
    Ok(Array { shape, data })
}

/// Writes atomically (temporary file, fsync, rename).
pub fn write(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let mut buf = Vec::new();
    {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&shape)
            .writer(&mut buf)
            .begin_nd()?;
        w.extend(data.iter().copied())?;
        w.finish()?;
    }
    rho_model::weights::write_atomically(path, &buf)
        .with_context(|| format!("cannot write {}", path.display()))
}
