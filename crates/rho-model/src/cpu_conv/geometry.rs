//! The shape arithmetic of one 3D convolution (groups 1, dilation 1), shared by the kernels.

/// A convolution of `[batch, in_channels, D, H, W]` by `[out_channels, in_channels, kd, kh, kw]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub in_channels: usize,
    /// Input depth, height, width.
    pub input: [usize; 3],
    pub out_channels: usize,
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
}

/// The column buffer of one chunk is kept below this, so that im2col writes it into cache and
/// the GEMM reads it from there (a whole sample's columns, as PyTorch's `slow_conv3d` builds
/// them, are tens of MB for a 3×3×3 layer and make both memory-bound).
pub const COLUMN_BUDGET_BYTES: usize = 2 << 20;

impl ConvGeometry {
    /// Output depth, height, width (PyTorch's formula; `None` when the kernel does not fit).
    pub fn output(&self) -> Option<[usize; 3]> {
        let mut out = [0; 3];
        for (d, o) in out.iter_mut().enumerate() {
            let padded = self.input[d] + 2 * self.padding[d];
            if self.stride[d] == 0 || padded < self.kernel[d] {
                return None;
            }
            *o = (padded - self.kernel[d]) / self.stride[d] + 1;
        }
        Some(out)
    }

    /// Rows of the column matrix: C·kd·kh·kw (the weight's `[out, rows]` view).
    pub fn col_rows(&self) -> usize {
        self.in_channels * self.taps()
    }

    /// Kernel taps per input channel: kd·kh·kw.
    pub fn taps(&self) -> usize {
        self.kernel.iter().product()
    }

    pub fn input_len(&self) -> usize {
        self.in_channels * self.input.iter().product::<usize>()
    }

    /// Output positions of one sample: Do·Ho·Wo.
    pub fn out_positions(&self) -> usize {
        self.output().map_or(0, |o| o.iter().product())
    }

    /// A 1×1×1 kernel with stride 1 and no padding: the input is its own column matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1, 1] && self.stride == [1, 1, 1] && self.padding == [0, 0, 0]
    }
}

/// The output indices `o` of one kernel tap whose input index `o·stride + tap − pad` lies in
/// `0..len`, as a half-open range (empty when none does).
pub fn valid_range(
    out_len: usize,
    len: usize,
    stride: usize,
    tap: usize,
    pad: usize,
) -> (usize, usize) {
    // lo: the first o with o·stride + tap ≥ pad.
    let lo = if tap >= pad {
        0
    } else {
        (pad - tap).div_ceil(stride)
    };
    // hi: the first o with o·stride + tap ≥ pad + len.
    let hi = (pad + len).saturating_sub(tap).div_ceil(stride);
    let hi = hi.min(out_len);
    (lo.min(hi), hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range_matches_a_direct_scan() {
        for out_len in 1..6 {
            for len in 1..9 {
                for stride in 1..4 {
                    for tap in 0..5 {
                        for pad in 0..4 {
                            let want: Vec<usize> = (0..out_len)
                                .filter(|&o| {
                                    let i = (o * stride + tap) as isize - pad as isize;
                                    i >= 0 && (i as usize) < len
                                })
                                .collect();
                            let (lo, hi) = valid_range(out_len, len, stride, tap, pad);
                            let got: Vec<usize> = (lo..hi).collect();
                            assert_eq!(got, want, "{out_len} {len} {stride} {tap} {pad}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn output_size_and_chunks() {
        let g = ConvGeometry {
            batch: 2,
            in_channels: 64,
            input: [8, 56, 56],
            out_channels: 64,
            kernel: [3, 3, 3],
            stride: [1, 2, 2],
            padding: [1, 1, 1],
        };
        assert_eq!(g.output(), Some([8, 28, 28]));
        assert_eq!(g.col_rows(), 64 * 27);
        let tiny = ConvGeometry {
            input: [1, 2, 2],
            kernel: [3, 3, 3],
            padding: [0, 0, 0],
            ..g
        };
        assert_eq!(tiny.output(), None);
    }
}
