//! BatchNorm's training-mode forward and backward on a contiguous host slice laid out as
//! [n, c, s] (samples, channels, positions), as PyTorch's CPU `batch_norm` computes them:
//! per-channel statistics in one parallel pass each, then one parallel pass writing the result.
//!
//! With M = n·s values per channel, x̂ = (x − μ)·σ⁻¹ and σ⁻¹ = 1/√(var + ε) (biased var):
//! - forward: y = γ·x̂ + β
//! - backward: dβ = Σ dy, dγ = Σ dy·x̂, dx = γ·σ⁻¹·(dy − dβ/M − x̂·dγ/M)
//!
//! Sums accumulate in f64 in a fixed order (per channel, sample by sample), so results do not
//! depend on the thread count.

use rayon::prelude::*;

use crate::host_backend::Real;

/// The [n, c, s] view of a tensor with channels on dim 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormShape {
    pub n: usize,
    pub c: usize,
    pub s: usize,
}

impl NormShape {
    /// Values per channel.
    pub fn count(self) -> usize {
        self.n * self.s
    }

    fn len(self) -> usize {
        self.n * self.c * self.s
    }

    /// The `s` values of channel `j` in sample `i`.
    fn block<T>(self, v: &[T], i: usize, j: usize) -> &[T] {
        &v[(i * self.c + j) * self.s..][..self.s]
    }

    /// Rows (sample, channel) per parallel task: about 16 K values each.
    fn rows_per_task(self) -> usize {
        (16 * 1024 / self.s.max(1)).max(1)
    }
}

/// The batch statistics of each channel: mean and biased variance.
#[derive(Debug, Clone, PartialEq)]
pub struct Moments {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

impl Moments {
    /// 1/√(var + ε) per channel.
    pub fn inv_std(&self, eps: f64) -> Vec<f64> {
        self.var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect()
    }
}

/// Σ v in f64 over eight lanes (vectorises; a fixed order).
fn sum<T: Real>(v: &[T]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = v.chunks_exact(8);
    let tail: f64 = chunks.remainder().iter().map(|x| x.to_f64()).sum();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x.to_f64();
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// Σ (v − m)².
fn sum_sq_dev<T: Real>(v: &[T], m: f64) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = v.chunks_exact(8);
    let tail: f64 = chunks
        .remainder()
        .iter()
        .map(|x| (x.to_f64() - m).powi(2))
        .sum();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            let d = x.to_f64() - m;
            *l += d * d;
        }
    }
    lanes.iter().sum::<f64>() + tail
}

/// (Σ dy, Σ dy·(x − m)).
fn sums_dy<T: Real>(dy: &[T], x: &[T], m: f64) -> (f64, f64) {
    let (mut a, mut b) = ([0f64; 8], [0f64; 8]);
    let (cd, cx) = (dy.chunks_exact(8), x.chunks_exact(8));
    let (mut ta, mut tb) = (0.0, 0.0);
    for (g, v) in cd.remainder().iter().zip(cx.remainder()) {
        ta += g.to_f64();
        tb += g.to_f64() * (v.to_f64() - m);
    }
    for (g8, x8) in cd.zip(cx) {
        for k in 0..8 {
            let g = g8[k].to_f64();
            a[k] += g;
            b[k] += g * (x8[k].to_f64() - m);
        }
    }
    (a.iter().sum::<f64>() + ta, b.iter().sum::<f64>() + tb)
}

/// Mean and biased variance of every channel (two passes, as PyTorch normalises).
pub fn moments<T: Real>(x: &[T], sh: NormShape) -> Moments {
    assert_eq!(
        x.len(),
        sh.len(),
        "BatchNorm: the values do not fill {sh:?}"
    );
    let count = sh.count() as f64;
    let per_channel: Vec<(f64, f64)> = (0..sh.c)
        .into_par_iter()
        .map(|j| {
            let mean = (0..sh.n).map(|i| sum(sh.block(x, i, j))).sum::<f64>() / count;
            let ss: f64 = (0..sh.n).map(|i| sum_sq_dev(sh.block(x, i, j), mean)).sum();
            (mean, ss / count)
        })
        .collect();
    let (mean, var) = per_channel.into_iter().unzip();
    Moments { mean, var }
}

/// A fresh [n, c, s] buffer whose rows (sample, channel) `row(start, channel, out)` fills, in
/// parallel over groups of rows.
fn fill_rows<T: Real>(sh: NormShape, row: impl Fn(usize, usize, &mut [T]) + Sync) -> Vec<T> {
    let mut out = vec![T::ZERO; sh.len()];
    let s = sh.s.max(1);
    let step = sh.rows_per_task() * s;
    out.par_chunks_mut(step).enumerate().for_each(|(t, chunk)| {
        for (r, dst) in chunk.chunks_mut(s).enumerate() {
            let start = t * step + r * s;
            row(start, (start / s) % sh.c, dst);
        }
    });
    out
}

/// max(v, 0) as Burn's ReLU computes it (NaN passes through).
fn relu<T: Real>(v: T) -> T {
    if v <= T::ZERO {
        T::ZERO
    } else {
        v
    }
}

/// What the forward pass adds after the normalisation, in the same pass.
#[derive(Debug, Clone, Copy)]
pub struct Epilogue<'a, T> {
    /// A residual added before the activation.
    pub skip: Option<&'a [T]>,
    pub relu: bool,
}

#[cfg(test)]
impl<T> Epilogue<'_, T> {
    pub fn none() -> Self {
        Epilogue {
            skip: None,
            relu: false,
        }
    }
}

/// y = act(γ·(x − μ)·σ⁻¹ + β [+ skip]) with the batch statistics; returns y and the statistics.
pub fn forward<T: Real>(
    x: &[T],
    sh: NormShape,
    gamma: &[f64],
    beta: &[f64],
    eps: f64,
    epi: Epilogue<'_, T>,
) -> (Vec<T>, Moments) {
    let m = moments(x, sh);
    let inv = m.inv_std(eps);
    let coef: Vec<(T, T)> = (0..sh.c)
        .map(|j| {
            let scale = gamma[j] * inv[j];
            (T::from_f64(scale), T::from_f64(beta[j] - m.mean[j] * scale))
        })
        .collect();
    let y = fill_rows(sh, |start, j, out| {
        let (a, k) = coef[j];
        let xr = &x[start..start + out.len()];
        match (epi.skip, epi.relu) {
            (None, false) => out.iter_mut().zip(xr).for_each(|(o, &v)| *o = a * v + k),
            (None, true) => out
                .iter_mut()
                .zip(xr)
                .for_each(|(o, &v)| *o = relu(a * v + k)),
            (Some(sk), act) => {
                let sr = &sk[start..start + out.len()];
                for ((o, &v), &r) in out.iter_mut().zip(xr).zip(sr) {
                    let z = a * v + k + r;
                    *o = if act { relu(z) } else { z };
                }
            }
        }
    });
    (y, m)
}

/// The gradients of [`forward`]: dx and d(skip) when asked, dγ and dβ.
pub struct NormGrads<T> {
    pub dx: Option<Vec<T>>,
    pub dskip: Option<Vec<T>>,
    pub dgamma: Vec<f64>,
    pub dbeta: Vec<f64>,
}

/// dy through the ReLU: zero where its output `y` was not positive.
fn masked<T: Real>(dy: &[T], y: &[T]) -> Vec<T> {
    dy.par_iter()
        .zip(y.par_iter())
        .with_min_len(16 * 1024)
        .map(|(&g, &v)| if v <= T::ZERO { T::ZERO } else { g })
        .collect()
}

/// What the backward pass of [`forward`] needs besides dy.
pub struct Saved<'a, T> {
    pub x: &'a [T],
    /// The output, when the forward pass ended in a ReLU.
    pub relu_out: Option<&'a [T]>,
    pub mean: &'a [f64],
    pub inv_std: &'a [f64],
    pub gamma: &'a [f64],
}

/// Backward of [`forward`]; `need` = (dx, dskip).
pub fn backward<T: Real>(
    saved: &Saved<'_, T>,
    dy: &[T],
    sh: NormShape,
    (need_dx, need_skip): (bool, bool),
) -> NormGrads<T> {
    assert_eq!(
        dy.len(),
        sh.len(),
        "BatchNorm backward: dy does not fill {sh:?}"
    );
    let owned = saved.relu_out.map(|y| masked(dy, y));
    let g: &[T] = owned.as_deref().unwrap_or(dy);
    let (x, mean, inv_std) = (saved.x, saved.mean, saved.inv_std);
    let sums: Vec<(f64, f64)> = (0..sh.c)
        .into_par_iter()
        .map(|j| {
            (0..sh.n)
                .map(|i| sums_dy(sh.block(g, i, j), sh.block(x, i, j), mean[j]))
                .fold((0.0, 0.0), |acc, s| (acc.0 + s.0, acc.1 + s.1))
        })
        .collect();
    let dbeta: Vec<f64> = sums.iter().map(|s| s.0).collect();
    let dgamma: Vec<f64> = sums.iter().zip(inv_std).map(|(s, i)| s.1 * i).collect();
    let dx = need_dx.then(|| {
        let count = sh.count() as f64;
        let coef: Vec<(T, T, T)> = (0..sh.c)
            .map(|j| {
                // dx = a·g + b·x + k with a = γσ⁻¹, b = −a·σ⁻²·Σg(x−μ)/M.
                let a = saved.gamma[j] * inv_std[j];
                let b = -a * inv_std[j] * inv_std[j] * sums[j].1 / count;
                let k = -a * sums[j].0 / count - b * mean[j];
                (T::from_f64(a), T::from_f64(b), T::from_f64(k))
            })
            .collect();
        fill_rows(sh, |start, j, out| {
            let (a, b, k) = coef[j];
            let (gr, xr) = (&g[start..start + out.len()], &x[start..start + out.len()]);
            for ((o, &gv), &xv) in out.iter_mut().zip(gr).zip(xr) {
                *o = a * gv + b * xv + k;
            }
        })
    });
    // The masked gradient is the residual's: moved, not copied, once dx is done.
    let dskip = need_skip.then(|| owned.unwrap_or_else(|| dy.to_vec()));
    NormGrads {
        dx,
        dskip,
        dgamma,
        dbeta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BatchNorm by its definition in f64, one value at a time.
    fn reference(x: &[f64], sh: NormShape, g: &[f64], b: &[f64], eps: f64) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        for j in 0..sh.c {
            let idx: Vec<usize> = (0..sh.n)
                .flat_map(|i| (0..sh.s).map(move |k| (i * sh.c + j) * sh.s + k))
                .collect();
            let mean = idx.iter().map(|&k| x[k]).sum::<f64>() / idx.len() as f64;
            let var = idx.iter().map(|&k| (x[k] - mean).powi(2)).sum::<f64>() / idx.len() as f64;
            for &k in &idx {
                y[k] = (x[k] - mean) / (var + eps).sqrt() * g[j] + b[j];
            }
        }
        y
    }

    fn values(len: usize, seed: u64) -> Vec<f64> {
        // A small LCG: deterministic values in [-2, 3) without a dependency.
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..len)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64 * 5.0 - 2.0
            })
            .collect()
    }

    const SHAPES: &[NormShape] = &[
        NormShape { n: 3, c: 4, s: 10 },
        NormShape { n: 1, c: 3, s: 17 },
        NormShape { n: 5, c: 7, s: 1 },
        NormShape {
            n: 2,
            c: 2,
            s: 20000,
        },
    ];

    #[test]
    fn forward_matches_the_definition() {
        for &sh in SHAPES {
            let x = values(sh.n * sh.c * sh.s, 1);
            let g = values(sh.c, 2);
            let b = values(sh.c, 3);
            let (y, _) = forward(&x, sh, &g, &b, 1e-5, Epilogue::none());
            let want = reference(&x, sh, &g, &b, 1e-5);
            for (a, w) in y.iter().zip(&want) {
                assert!((a - w).abs() < 1e-12, "{sh:?}: {a} vs {w}");
            }
        }
    }

    /// The backward pass against central differences of L = Σ probe·y (f64), without and with
    /// the ReLU and the residual.
    #[test]
    fn backward_matches_finite_differences() {
        let eps = 1e-3;
        for (&sh, (with_skip, with_relu)) in SHAPES[..3]
            .iter()
            .flat_map(|sh| [(false, false), (false, true), (true, true)].map(|e| (sh, e)))
        {
            let x = values(sh.n * sh.c * sh.s, 4);
            let (g, b, probe) = (values(sh.c, 5), values(sh.c, 6), values(x.len(), 7));
            let skip0 = values(x.len(), 8);
            let loss = |x: &[f64], g: &[f64], b: &[f64], skip: &[f64]| -> f64 {
                let epi = Epilogue {
                    skip: with_skip.then_some(skip),
                    relu: with_relu,
                };
                let (y, _) = forward(x, sh, g, b, eps, epi);
                y.iter().zip(&probe).map(|(y, p)| y * p).sum()
            };
            let epi = Epilogue {
                skip: with_skip.then_some(&skip0[..]),
                relu: with_relu,
            };
            let (y, m) = forward(&x, sh, &g, &b, eps, epi);
            let inv = m.inv_std(eps);
            let saved = Saved {
                x: &x,
                relu_out: with_relu.then_some(&y[..]),
                mean: &m.mean,
                inv_std: &inv,
                gamma: &g,
            };
            let grads = backward(&saved, &probe, sh, (true, with_skip));
            let h = 1e-6;
            let diff = |f: &dyn Fn(f64) -> f64| (f(h) - f(-h)) / (2.0 * h);
            let what = format!("{sh:?} skip {with_skip} relu {with_relu}");
            for k in 0..x.len() {
                let num = diff(&|d| {
                    let mut xp = x.clone();
                    xp[k] += d;
                    loss(&xp, &g, &b, &skip0)
                });
                let got = grads.dx.as_ref().unwrap()[k];
                assert!((got - num).abs() < 1e-6, "{what} dx[{k}]: {got} vs {num}");
                if with_skip {
                    let num = diff(&|d| {
                        let mut sp = skip0.clone();
                        sp[k] += d;
                        loss(&x, &g, &b, &sp)
                    });
                    let got = grads.dskip.as_ref().unwrap()[k];
                    assert!(
                        (got - num).abs() < 1e-6,
                        "{what} dskip[{k}]: {got} vs {num}"
                    );
                }
            }
            for j in 0..sh.c {
                let ng = diff(&|d| {
                    let mut gp = g.clone();
                    gp[j] += d;
                    loss(&x, &gp, &b, &skip0)
                });
                let nb = diff(&|d| {
                    let mut bp = b.clone();
                    bp[j] += d;
                    loss(&x, &g, &bp, &skip0)
                });
                assert!((grads.dgamma[j] - ng).abs() < 1e-6, "{what} dγ[{j}]");
                assert!((grads.dbeta[j] - nb).abs() < 1e-6, "{what} dβ[{j}]");
            }
        }
    }
}
