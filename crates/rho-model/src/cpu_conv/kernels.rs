//! The convolution as GEMMs over an im2col column matrix, on contiguous host slices (NCDHW).
//!
//! For sample n and a chunk of output positions p (a few output rows, so that the chunk's
//! columns stay in cache while the GEMM reads them):
//! - forward: y_n[:, p] = W[Co, K] · cols_n[K, p]
//! - weight gradient: dW[Co, K] += dy_n[:, p] · cols_n[K, p]ᵀ
//! - input gradient, stride 1: a forward convolution of dy with the flipped, transposed kernel
//!   (padding k − 1 − p); other strides: dcols[K, p] = Wᵀ · dy_n[:, p], then dx_n += col2im(dcols)
//!
//! with K = C·kd·kh·kw, as PyTorch's `slow_conv3d` and oneDNN's reference GEMM convolution do.
//! The GEMMs are those of the `gemm` crate (Burn's flex uses it). Work is spread over the rayon
//! threads by (sample, chunk) where outputs are disjoint, by sample where a sum is ordered, and
//! inside each GEMM otherwise; every sum runs in a fixed order, so results do not depend on
//! scheduling. A 1×1×1 convolution with stride 1 uses the sample as its own column matrix.

use rayon::prelude::*;

use super::geometry::{valid_range, ConvGeometry, COLUMN_BUDGET_BYTES};

/// The float types the kernels run in.
pub use crate::host_backend::Real;

/// Per-sample dW buffers (summed in sample order) are used below this many bytes in all.
const SAMPLE_PARTIALS_BYTES: usize = 64 << 20;

/// A matrix operand: a pointer with row and column strides (elements).
#[derive(Clone, Copy)]
struct Mat<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

// SAFETY: a `Mat` points into a slice borrowed for the whole call and is only read.
unsafe impl<T: Sync> Send for Mat<T> {}
unsafe impl<T: Sync> Sync for Mat<T> {}

/// A pointer that tasks writing disjoint parts of one buffer share.
#[derive(Clone, Copy)]
struct SharedOut<T>(*mut T);
// SAFETY: every task writes a region no other task touches (see each use).
unsafe impl<T: Send> Send for SharedOut<T> {}
unsafe impl<T: Send> Sync for SharedOut<T> {}

/// dst[m, n] = (accumulate ? dst : 0) + lhs[m, k] · rhs[k, n].
///
/// # Safety
/// Every operand must be valid for the given shape and strides; `dst` must not alias them.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    dst_rs: isize,
    accumulate: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
    parallelism: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        1,
        dst_rs,
        accumulate,
        lhs.ptr,
        lhs.cs,
        lhs.rs,
        rhs.ptr,
        rhs.cs,
        rhs.rs,
        T::ONE,
        T::ONE,
        false,
        false,
        false,
        parallelism,
    )
}

/// Output rows `start..end` of one sample, a row being (od, oh) with its Wo positions.
#[derive(Debug, Clone, Copy)]
struct Rows {
    start: usize,
    end: usize,
}

impl Rows {
    fn len(self) -> usize {
        self.end - self.start
    }
}

/// The row chunks of a sample: as many output rows per chunk as keep its columns within
/// `budget` bytes (at least one row); one chunk for a pointwise convolution (no buffer).
fn row_chunks(g: &ConvGeometry, elem_bytes: usize, budget: usize) -> Vec<Rows> {
    let [od, oh, ow] = g.output().unwrap_or_default();
    let rows = od * oh;
    let per = if g.is_pointwise() {
        rows.max(1)
    } else {
        (budget / (g.col_rows() * ow * elem_bytes).max(1)).clamp(1, rows.max(1))
    };
    (0..rows)
        .step_by(per)
        .map(|start| Rows {
            start,
            end: (start + per).min(rows),
        })
        .collect()
}

/// Elements of the largest chunk's column buffer.
fn chunk_len(g: &ConvGeometry, chunks: &[Rows]) -> usize {
    if g.is_pointwise() {
        return 0;
    }
    let ow = g.output().unwrap_or_default()[2];
    g.col_rows() * chunks.iter().map(|r| r.len()).max().unwrap_or(0) * ow
}

/// Output rows `rows` of one sample's columns: `cols[row, p]` for row = (c, i, j, l) and p over
/// the rows' positions, zero where the tap falls into the padding.
fn im2col<T: Real>(g: &ConvGeometry, x: &[T], rows: Rows, cols: &mut [T], parallel: bool) {
    let [_, ho, wo] = g.output().unwrap_or_default();
    let [id_len, ih_len, iw_len] = g.input;
    let [kd, kh, kw] = g.kernel;
    let [sd, sh, sw] = g.stride;
    let [pd, ph, pw] = g.padding;
    let p = rows.len() * wo;
    let plane = ih_len * iw_len;
    let fill_row = |(row, dst): (usize, &mut [T])| {
        let (c, tap) = (row / (kd * kh * kw), row % (kd * kh * kw));
        let (i, j, l) = (tap / (kh * kw), (tap / kw) % kh, tap % kw);
        let xc = &x[c * id_len * plane..(c + 1) * id_len * plane];
        let (w_lo, w_hi) = valid_range(wo, iw_len, sw, l, pw);
        for r in rows.start..rows.end {
            let (idp, ihp) = ((r / ho) * sd + i, (r % ho) * sh + j);
            let out = &mut dst[(r - rows.start) * wo..][..wo];
            if idp < pd || idp - pd >= id_len || ihp < ph || ihp - ph >= ih_len {
                out.fill(T::ZERO);
                continue;
            }
            let xrow = &xc[((idp - pd) * ih_len + (ihp - ph)) * iw_len..][..iw_len];
            out[..w_lo].fill(T::ZERO);
            out[w_hi..].fill(T::ZERO);
            if w_lo < w_hi {
                let first = w_lo * sw + l - pw;
                if sw == 1 {
                    out[w_lo..w_hi].copy_from_slice(&xrow[first..first + (w_hi - w_lo)]);
                } else {
                    for (k, o) in out[w_lo..w_hi].iter_mut().enumerate() {
                        *o = xrow[first + k * sw];
                    }
                }
            }
        }
    };
    let cols = &mut cols[..g.col_rows() * p];
    if parallel {
        let min_rows = (4096 / p.max(1)).max(1);
        cols.par_chunks_mut(p.max(1))
            .with_min_len(min_rows)
            .enumerate()
            .for_each(fill_row);
    } else {
        cols.chunks_mut(p.max(1)).enumerate().for_each(fill_row);
    }
}

/// dx += col2im(dcols) for output rows `rows` of one sample.
fn col2im_add<T: Real>(g: &ConvGeometry, dcols: &[T], rows: Rows, dx: &mut [T], parallel: bool) {
    let [_, ho, wo] = g.output().unwrap_or_default();
    let [id_len, ih_len, iw_len] = g.input;
    let [_, kh, kw] = g.kernel;
    let [sd, sh, sw] = g.stride;
    let [pd, ph, pw] = g.padding;
    let p = rows.len() * wo;
    let taps = g.taps();
    let add_channel = |(c, dxc): (usize, &mut [T])| {
        for tap in 0..taps {
            let (i, j, l) = (tap / (kh * kw), (tap / kw) % kh, tap % kw);
            let src = &dcols[(c * taps + tap) * p..][..p];
            let (w_lo, w_hi) = valid_range(wo, iw_len, sw, l, pw);
            if w_lo >= w_hi {
                continue;
            }
            for r in rows.start..rows.end {
                let (idp, ihp) = ((r / ho) * sd + i, (r % ho) * sh + j);
                if idp < pd || idp - pd >= id_len || ihp < ph || ihp - ph >= ih_len {
                    continue;
                }
                let row = &src[(r - rows.start) * wo..][..wo];
                let base = ((idp - pd) * ih_len + (ihp - ph)) * iw_len;
                let first = base + w_lo * sw + l - pw;
                for (k, v) in row[w_lo..w_hi].iter().enumerate() {
                    dxc[first + k * sw] += *v;
                }
            }
        }
    };
    let dx = &mut dx[..g.input_len()];
    let per_channel = (id_len * ih_len * iw_len).max(1);
    if parallel {
        dx.par_chunks_mut(per_channel)
            .enumerate()
            .for_each(add_channel);
    } else {
        dx.chunks_mut(per_channel).enumerate().for_each(add_channel);
    }
}

/// The column matrix of sample `xn` for `rows`: the input itself (pointwise) or im2col into
/// `cols`; `transposed` gives its [p, k] view.
fn columns<T: Real>(
    g: &ConvGeometry,
    xn: &[T],
    rows: Rows,
    cols: &mut [T],
    parallel: bool,
    transposed: bool,
) -> Mat<T> {
    let wo = g.output().unwrap_or_default()[2];
    let (ptr, stride) = if g.is_pointwise() {
        (xn[rows.start * wo..].as_ptr(), g.out_positions())
    } else {
        im2col(g, xn, rows, cols, parallel);
        (cols.as_ptr(), rows.len() * wo)
    };
    let (rs, cs) = if transposed {
        (1, stride as isize)
    } else {
        (stride as isize, 1)
    };
    Mat { ptr, rs, cs }
}

/// Rayon threads available to this call.
fn threads() -> usize {
    rayon::current_num_threads()
}

/// y = conv(x, w): `[batch, Co, Do, Ho, Wo]`, contiguous.
pub fn forward<T: Real>(g: &ConvGeometry, x: &[T], w: &[T]) -> Vec<T> {
    forward_within(g, x, w, COLUMN_BUDGET_BYTES)
}

/// [`forward`] with column chunks of at most `budget` bytes.
///
/// (sample, chunk) tasks run in parallel, each GEMM on one thread; with fewer tasks than
/// threads they run one after another with each GEMM on all threads.
fn forward_within<T: Real>(g: &ConvGeometry, x: &[T], w: &[T], budget: usize) -> Vec<T> {
    let chunks = row_chunks(g, std::mem::size_of::<T>(), budget);
    let (pos, k, co) = (g.out_positions(), g.col_rows(), g.out_channels);
    let wo = g.output().unwrap_or_default()[2];
    let mut y = vec![T::ZERO; g.batch * co * pos];
    let out = SharedOut(y.as_mut_ptr());
    let wmat = Mat {
        ptr: w.as_ptr(),
        rs: k as isize,
        cs: 1,
    };
    let tasks: Vec<(usize, Rows)> = (0..g.batch)
        .flat_map(|n| chunks.iter().map(move |&r| (n, r)))
        .collect();
    let spread = tasks.len() >= threads();
    let run = |cols: &mut Vec<T>, &(n, rows): &(usize, Rows)| {
        let xn = &x[n * g.input_len()..][..g.input_len()];
        let rhs = columns(g, xn, rows, cols, !spread, false);
        let par = if spread {
            gemm::Parallelism::None
        } else {
            gemm::Parallelism::Rayon(0)
        };
        let dst = out;
        // SAFETY: W is [co, k], the columns [k, p]; this task alone writes columns
        // rows.start·wo.. + p of sample n's [co, pos] rows of y.
        unsafe {
            let at = dst.0.add(n * co * pos + rows.start * wo);
            gemm(
                (co, rows.len() * wo, k),
                at,
                pos as isize,
                false,
                wmat,
                rhs,
                par,
            )
        };
    };
    let len = chunk_len(g, &chunks);
    if spread {
        tasks.par_iter().for_each_init(|| vec![T::ZERO; len], run);
    } else {
        let mut cols = vec![T::ZERO; len];
        tasks.iter().for_each(|t| run(&mut cols, t));
    }
    y
}

/// Which gradients a backward pass computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    pub input: bool,
    pub weight: bool,
}

/// Gradients of a convolution: `None` where not asked for.
pub type ConvGrads<T> = (Option<Vec<T>>, Option<Vec<T>>);

/// (dx, dw) of y = conv(x, w) given dy.
pub fn backward<T: Real>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    dy: &[T],
    needs: Needs,
) -> ConvGrads<T> {
    backward_within(g, x, w, dy, needs, COLUMN_BUDGET_BYTES)
}

/// [`backward`] with column chunks of at most `budget` bytes.
fn backward_within<T: Real>(
    g: &ConvGeometry,
    x: &[T],
    w: &[T],
    dy: &[T],
    needs: Needs,
    budget: usize,
) -> ConvGrads<T> {
    let dw = needs.weight.then(|| weight_grad(g, x, dy, budget));
    let dx = needs.input.then(|| match transposed_geometry(g) {
        Some(gt) => forward_within(&gt, dy, &flipped_transposed(g, w), budget),
        None => input_grad_col2im(g, w, dy, budget),
    });
    (dx, dw)
}

/// dW = Σ_n Σ_chunks dy_n[:, p] · cols_n[K, p]ᵀ, summed in sample order: one partial per
/// sample in parallel when those fit `SAMPLE_PARTIALS_BYTES`, else sample after sample with
/// each GEMM on all threads.
fn weight_grad<T: Real>(g: &ConvGeometry, x: &[T], dy: &[T], budget: usize) -> Vec<T> {
    let chunks = row_chunks(g, std::mem::size_of::<T>(), budget);
    let len = chunk_len(g, &chunks);
    let (pos, k, co) = (g.out_positions(), g.col_rows(), g.out_channels);
    let wo = g.output().unwrap_or_default()[2];
    let sample = |n: usize, dw: &mut [T], cols: &mut [T], fresh: bool, par: bool| {
        let xn = &x[n * g.input_len()..][..g.input_len()];
        let parallelism = if par {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        for (i, &rows) in chunks.iter().enumerate() {
            let dy_chunk = Mat {
                ptr: dy[n * co * pos + rows.start * wo..].as_ptr(),
                rs: pos as isize,
                cs: 1,
            };
            let cols_t = columns(g, xn, rows, cols, par, true);
            let acc = !(fresh && i == 0);
            // SAFETY: dy_n's chunk is [co, p] (row stride pos), colsᵀ [p, k]; dw is [co, k].
            unsafe {
                gemm(
                    (co, k, rows.len() * wo),
                    dw.as_mut_ptr(),
                    k as isize,
                    acc,
                    dy_chunk,
                    cols_t,
                    parallelism,
                )
            };
        }
    };
    let partials = g.batch * co * k * std::mem::size_of::<T>();
    let mut dw = vec![T::ZERO; co * k];
    if g.batch >= threads() && threads() > 1 && partials <= SAMPLE_PARTIALS_BYTES {
        let parts: Vec<Vec<T>> = (0..g.batch)
            .into_par_iter()
            .map_init(
                || vec![T::ZERO; len],
                |cols, n| {
                    let mut part = vec![T::ZERO; co * k];
                    sample(n, &mut part, cols, true, false);
                    part
                },
            )
            .collect();
        for part in &parts {
            dw.iter_mut().zip(part).for_each(|(a, b)| *a += *b);
        }
    } else {
        let mut cols = vec![T::ZERO; len];
        for n in 0..g.batch {
            sample(n, &mut dw, &mut cols, n == 0, true);
        }
    }
    dw
}

/// The geometry of dX as a forward convolution of dy (stride 1 only): input channels Co,
/// output channels C, padding k − 1 − p; `None` for other strides or wider padding.
fn transposed_geometry(g: &ConvGeometry) -> Option<ConvGeometry> {
    if g.stride != [1, 1, 1] || (0..3).any(|d| g.padding[d] + 1 > g.kernel[d]) {
        return None;
    }
    let out = g.output()?;
    Some(ConvGeometry {
        batch: g.batch,
        in_channels: g.out_channels,
        input: out,
        out_channels: g.in_channels,
        kernel: g.kernel,
        stride: [1, 1, 1],
        padding: [0, 1, 2].map(|d| g.kernel[d] - 1 - g.padding[d]),
    })
}

/// W'[c, o, tap] = W[o, c, taps − 1 − tap]: the kernel of dX's forward convolution, one input
/// channel per task (a serial flip of a stage-4 kernel costs as much as a small GEMM).
fn flipped_transposed<T: Real>(g: &ConvGeometry, w: &[T]) -> Vec<T> {
    let (c_in, c_out, taps) = (g.in_channels, g.out_channels, g.taps());
    let mut out = vec![T::ZERO; w.len()];
    out.par_chunks_mut((c_out * taps).max(1))
        .enumerate()
        .for_each(|(c, block)| {
            for (o, dst) in block.chunks_mut(taps.max(1)).enumerate() {
                let src = &w[(o * c_in + c) * taps..][..taps];
                for (d, s) in dst.iter_mut().zip(src.iter().rev()) {
                    *d = *s;
                }
            }
        });
    out
}

/// dx_n = Σ_chunks col2im(Wᵀ · dy_n[:, p]) (strided convolutions): samples in parallel, each
/// chunk's GEMM and col2im on one thread; with fewer samples than threads, sample after
/// sample with each step on all threads.
fn input_grad_col2im<T: Real>(g: &ConvGeometry, w: &[T], dy: &[T], budget: usize) -> Vec<T> {
    let chunks = row_chunks(g, std::mem::size_of::<T>(), budget);
    // Never pointwise here (those take the transposed path), so the chunks need a buffer.
    let len = chunk_len(g, &chunks);
    let (pos, k, co) = (g.out_positions(), g.col_rows(), g.out_channels);
    let wo = g.output().unwrap_or_default()[2];
    let wt = Mat {
        ptr: w.as_ptr(),
        rs: 1,
        cs: k as isize,
    };
    let spread = g.batch >= threads() && threads() > 1;
    let sample = |(n, dxn): (usize, &mut [T]), dcols: &mut Vec<T>| {
        let par = if spread {
            gemm::Parallelism::None
        } else {
            gemm::Parallelism::Rayon(0)
        };
        for &rows in &chunks {
            let dy_chunk = Mat {
                ptr: dy[n * co * pos + rows.start * wo..].as_ptr(),
                rs: pos as isize,
                cs: 1,
            };
            let p = rows.len() * wo;
            // SAFETY: Wᵀ is [k, co], dy_n's chunk [co, p]; dcols holds [k, p].
            unsafe {
                gemm(
                    (k, p, co),
                    dcols.as_mut_ptr(),
                    p as isize,
                    false,
                    wt,
                    dy_chunk,
                    par,
                )
            };
            col2im_add(g, dcols, rows, dxn, !spread);
        }
    };
    let mut dx = vec![T::ZERO; g.batch * g.input_len()];
    let per = g.input_len().max(1);
    if spread {
        dx.par_chunks_mut(per)
            .enumerate()
            .for_each_init(|| vec![T::ZERO; len], |dcols, item| sample(item, dcols));
    } else {
        let mut dcols = vec![T::ZERO; len];
        dx.chunks_mut(per)
            .enumerate()
            .for_each(|item| sample(item, &mut dcols));
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The convolution by its definition, in f64.
    fn direct(g: &ConvGeometry, x: &[f64], w: &[f64]) -> Vec<f64> {
        let [od, oh, ow] = g.output().unwrap();
        let [id, ih, iw] = g.input;
        let [kd, kh, kw] = g.kernel;
        let mut y = vec![0.0; g.batch * g.out_channels * od * oh * ow];
        let mut idx = 0;
        for n in 0..g.batch {
            for o in 0..g.out_channels {
                for a in 0..od {
                    for b in 0..oh {
                        for c in 0..ow {
                            let mut s = 0.0;
                            for ci in 0..g.in_channels {
                                for i in 0..kd {
                                    for j in 0..kh {
                                        for l in 0..kw {
                                            let z = (a * g.stride[0] + i) as isize
                                                - g.padding[0] as isize;
                                            let u = (b * g.stride[1] + j) as isize
                                                - g.padding[1] as isize;
                                            let v = (c * g.stride[2] + l) as isize
                                                - g.padding[2] as isize;
                                            if z < 0
                                                || u < 0
                                                || v < 0
                                                || z >= id as isize
                                                || u >= ih as isize
                                                || v >= iw as isize
                                            {
                                                continue;
                                            }
                                            let xi = (((n * g.in_channels + ci) * id + z as usize)
                                                * ih
                                                + u as usize)
                                                * iw
                                                + v as usize;
                                            let wi = (((o * g.in_channels + ci) * kd + i) * kh + j)
                                                * kw
                                                + l;
                                            s += x[xi] * w[wi];
                                        }
                                    }
                                }
                            }
                            y[idx] = s;
                            idx += 1;
                        }
                    }
                }
            }
        }
        y
    }

    /// The default chunks, and one output row per chunk.
    const BUDGETS: [usize; 2] = [COLUMN_BUDGET_BYTES, 1];

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
    }

    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5
            })
            .collect()
    }

    fn geometries() -> Vec<ConvGeometry> {
        let g = |cin, input, cout, kernel, stride, padding| ConvGeometry {
            batch: 2,
            in_channels: cin,
            input,
            out_channels: cout,
            kernel,
            stride,
            padding,
        };
        vec![
            g(3, [4, 9, 9], 4, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            g(2, [5, 7, 8], 3, [3, 3, 3], [2, 2, 2], [1, 1, 1]),
            g(3, [2, 11, 11], 2, [1, 7, 7], [1, 2, 2], [0, 3, 3]),
            g(2, [3, 6, 6], 3, [5, 1, 1], [1, 1, 1], [2, 0, 0]),
            g(4, [3, 5, 5], 3, [1, 1, 1], [1, 1, 1], [0, 0, 0]),
            g(4, [3, 5, 5], 3, [1, 1, 1], [2, 2, 2], [0, 0, 0]),
            g(2, [1, 4, 4], 2, [3, 3, 3], [1, 1, 1], [1, 1, 1]),
            // Padding wider than k − 1: dX through col2im although the stride is 1.
            g(2, [3, 4, 4], 3, [1, 3, 1], [1, 1, 1], [1, 3, 1]),
        ]
    }

    #[test]
    fn row_chunks_cover_every_output_row_within_the_budget() {
        for g in geometries() {
            let [od, oh, ow] = g.output().unwrap();
            for budget in [1, 300, COLUMN_BUDGET_BYTES] {
                let chunks = row_chunks(&g, 8, budget);
                let rows: Vec<usize> = chunks.iter().flat_map(|r| r.start..r.end).collect();
                assert_eq!(rows, (0..od * oh).collect::<Vec<_>>(), "{g:?}");
                if !g.is_pointwise() && chunks.len() > 1 {
                    assert!(chunk_len(&g, &chunks) * 8 <= budget.max(g.col_rows() * ow * 8));
                }
            }
        }
    }

    #[test]
    fn forward_equals_the_definition() {
        for g in geometries() {
            let x = values(g.batch * g.input_len(), 1);
            let w = values(g.out_channels * g.col_rows(), 2);
            let want = direct(&g, &x, &w);
            for budget in BUDGETS {
                let got = forward_within(&g, &x, &w, budget);
                let err = max_diff(&got, &want);
                assert!(err < 1e-13, "{g:?} ({budget} B): {err}");
            }
        }
    }

    /// The gradients against the adjoint identities ⟨dy, conv(dx_probe, w)⟩ = ⟨dx, dx_probe⟩
    /// and ⟨dy, conv(x, dw_probe)⟩ = ⟨dw, dw_probe⟩ (conv is linear in each argument).
    #[test]
    fn gradients_are_the_adjoints_of_the_forward() {
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        for g in geometries() {
            let x = values(g.batch * g.input_len(), 3);
            let w = values(g.out_channels * g.col_rows(), 4);
            let dy = values(g.batch * g.out_channels * g.out_positions(), 5);
            let both = Needs {
                input: true,
                weight: true,
            };
            let (dx, dw) = backward(&g, &x, &w, &dy, both);
            let (dx, dw) = (dx.unwrap(), dw.unwrap());
            // One output row per chunk gives the same sums; each gradient alone too.
            let (cx, cw) = backward_within(&g, &x, &w, &dy, both, 1);
            let (ex, ew) = (max_diff(&cx.unwrap(), &dx), max_diff(&cw.unwrap(), &dw));
            assert!(ex < 1e-13 && ew < 1e-13, "{g:?}: {ex:.1e} {ew:.1e}");
            let only_x = backward(
                &g,
                &x,
                &w,
                &dy,
                Needs {
                    input: true,
                    weight: false,
                },
            );
            assert!(only_x.1.is_none() && max_diff(&only_x.0.unwrap(), &dx) == 0.0);
            for probe_seed in 6..9 {
                let px = values(x.len(), probe_seed);
                let pw = values(w.len(), probe_seed + 10);
                let lhs = dot(&dy, &direct(&g, &px, &w));
                assert!(
                    (lhs - dot(&dx, &px)).abs() < 1e-12 * lhs.abs().max(1.0),
                    "{g:?} dx"
                );
                let lhs = dot(&dy, &direct(&g, &x, &pw));
                assert!(
                    (lhs - dot(&dw, &pw)).abs() < 1e-12 * lhs.abs().max(1.0),
                    "{g:?} dw"
                );
            }
        }
    }
}
