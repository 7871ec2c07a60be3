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
    if let Some(kind) = rho_data::not_a_regular_file(path) {
        bail!("{} is {kind}, not a .npy file", path.display());
    }
    check_shape(path)?;
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
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        bail!(
            "{}: value {i} (of {}) is {}; clips must hold finite normalised pixels",
            path.display(),
            data.len(),
            data[i]
        );
    }
    Ok(Array { shape, data })
}

/// Refuses a header whose shape holds more values than this machine can address, before the
/// npy reader multiplies them (it would overflow).
fn check_shape(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .with_context(|| format!("cannot open {}", path.display()))?;
    let text = String::from_utf8_lossy(&head[..n]);
    let Some(dims) = text
        .split_once("'shape':")
        .and_then(|(_, rest)| rest.split_once('(')?.1.split_once(')'))
        .map(|(dims, _)| dims)
    else {
        return Ok(()); // not a header npyz reads; it says why
    };
    let values = dims
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .try_fold(1u128, |acc, d| {
            acc.checked_mul(d.trim().trim_end_matches('L').parse::<u128>().ok()?)
        });
    if values.is_none_or(|v| v > (usize::MAX / 8) as u128) {
        bail!(
            "{}: its shape ({dims}) holds more values than this machine can address; the file is corrupt",
            path.display()
        );
    }
    Ok(())
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
