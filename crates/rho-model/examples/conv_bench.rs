//! Per-layer timing of the host convolution kernels (forward, dX, dW) on R3D-18's shapes at
//! [batch, 3, 8, 64, 64], the issue setting of `scripts/bench_model.sh`; GF/s counts 2 flops per
//! multiply-add. `B=N` sets the batch, `RAYON_NUM_THREADS` the threads:
//!
//!     RAYON_NUM_THREADS=1 cargo run --release -p rho-model --example conv_bench [-- --json]
//!
//! `scripts/bench_conv_layers.sh` runs it beside PyTorch's convolutions on the same layers.
//!
//! docs/architecture.md ("CPU convolutions") records what it measured.
use rho_model::cpu_conv::{host_backward, host_forward, ConvGeometry, Needs};
use std::time::Instant;

/// (C, Co, input D×H×W, kernel, stride, padding).
type Shape = (usize, usize, [usize; 3], [usize; 3], [usize; 3], [usize; 3]);

fn main() {
    // (C, Co, input D×H×W, kernel, stride, padding) of R3D-18 at 8×64×64.
    let shapes: &[Shape] = &[
        (3, 64, [8, 64, 64], [3, 7, 7], [1, 2, 2], [1, 3, 3]),
        (64, 64, [8, 32, 32], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
        (64, 128, [8, 32, 32], [3, 3, 3], [2, 2, 2], [1, 1, 1]),
        (128, 128, [4, 16, 16], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
        (128, 256, [4, 16, 16], [3, 3, 3], [2, 2, 2], [1, 1, 1]),
        (256, 256, [2, 8, 8], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
        (256, 512, [2, 8, 8], [3, 3, 3], [2, 2, 2], [1, 1, 1]),
        (512, 512, [1, 4, 4], [3, 3, 3], [1, 1, 1], [1, 1, 1]),
    ];
    let batch: usize = std::env::var("B")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let json = std::env::args().any(|a| a == "--json");
    for &(c, co, input, kernel, stride, padding) in shapes {
        let g = ConvGeometry {
            batch,
            in_channels: c,
            input,
            out_channels: co,
            kernel,
            stride,
            padding,
        };
        let x: Vec<f32> = (0..batch * g.input_len())
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3)
            .collect();
        let w: Vec<f32> = (0..co * g.col_rows())
            .map(|i| ((i * 104729) % 1000) as f32 * 1e-3)
            .collect();
        let y = host_forward(&g, &x, &w);
        let macs = (y.len() * g.col_rows()) as f64;
        let mut best = [f64::MAX; 3];
        for _ in 0..3 {
            let t = Instant::now();
            let y = host_forward(&g, &x, &w);
            best[0] = best[0].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let _ = host_backward(
                &g,
                &x,
                &w,
                &y,
                Needs {
                    input: true,
                    weight: false,
                },
            );
            best[1] = best[1].min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let _ = host_backward(
                &g,
                &x,
                &w,
                &y,
                Needs {
                    input: false,
                    weight: true,
                },
            );
            best[2] = best[2].min(t.elapsed().as_secs_f64());
        }
        let gfs = |t: f64| 2.0 * macs / t / 1e9;
        if json {
            println!(
                "{{\"batch\":{batch},\"in_channels\":{c},\"out_channels\":{co},\"input\":{input:?},\"kernel\":{kernel:?},\"stride\":{stride:?},\"padding\":{padding:?},\"fwd_ms\":{:.3},\"dx_ms\":{:.3},\"dw_ms\":{:.3},\"gmac\":{:.4}}}",
                best[0] * 1e3,
                best[1] * 1e3,
                best[2] * 1e3,
                macs / 1e9
            );
            continue;
        }
        println!(
            "{c:>3}->{co:<3} {input:?} k{kernel:?} s{stride:?}: {:.3} GMAC fwd {:.1} ms ({:.0} GF/s) dx {:.1} ms ({:.0}) dw {:.1} ms ({:.0})",
            macs / 1e9,
            best[0] * 1e3,
            gfs(best[0]),
            best[1] * 1e3,
            gfs(best[1]),
            best[2] * 1e3,
            gfs(best[2]),
        );
    }
}
