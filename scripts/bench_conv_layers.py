#!/usr/bin/env python3
"""PyTorch side of rho-model's `conv_bench` example: R3D-18's convolutions at
[batch, 3, 8, 64, 64], forward, input gradient and weight gradient each timed alone (best of 3),
printed beside rho's host kernels from `conv_bench --json` (read from --rho, one JSON per line).
"""
import argparse
import json
import time

import torch

# (C, Co, input D×H×W, kernel, stride, padding): the list of conv_bench.rs, in its order.
SHAPES = [
    (3, 64, (8, 64, 64), (3, 7, 7), (1, 2, 2), (1, 3, 3)),
    (64, 64, (8, 32, 32), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    (64, 128, (8, 32, 32), (3, 3, 3), (2, 2, 2), (1, 1, 1)),
    (128, 128, (4, 16, 16), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    (128, 256, (4, 16, 16), (3, 3, 3), (2, 2, 2), (1, 1, 1)),
    (256, 256, (2, 8, 8), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
    (256, 512, (2, 8, 8), (3, 3, 3), (2, 2, 2), (1, 1, 1)),
    (512, 512, (1, 4, 4), (3, 3, 3), (1, 1, 1), (1, 1, 1)),
]


def best_of(fn, n=3):
    fn()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def time_layer(batch, c, co, size, kernel, stride, padding):
    conv = torch.nn.Conv3d(c, co, kernel, stride, padding, bias=False)
    x = torch.randn(batch, c, *size, requires_grad=True)
    y = conv(x)
    g = torch.randn_like(y)
    fwd = best_of(lambda: conv(x))
    dx = best_of(lambda: torch.autograd.grad(conv(x), x, g))
    dw = best_of(lambda: torch.autograd.grad(conv(x), conv.weight, g))
    # The gradient timings include a forward pass; take it off.
    return fwd, max(dx - fwd, 1e-3), max(dw - fwd, 1e-3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rho", required=True, help="conv_bench --json output")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rho = [json.loads(line) for line in open(a.rho) if line.startswith("{")]
    if len(rho) != len(SHAPES):
        raise SystemExit(f"{a.rho}: {len(rho)} layers, expected {len(SHAPES)} (conv_bench --json)")
    print(f"{'layer (GF/s: rho/PyTorch)':<44} {'GMAC':>6}  {'fwd':<11} {'dx':<11} {'dw':<11}")
    total_rho = total_torch = 0.0
    for shape, r in zip(SHAPES, rho):
        t = time_layer(a.batch, *shape)
        rr = (r["fwd_ms"], r["dx_ms"], r["dw_ms"])
        gf = lambda ms: 2 * r["gmac"] / ms * 1e3
        cells = " ".join(f"{gf(x):>5.0f}/{gf(y):<5.0f}" for x, y in zip(rr, t))
        print(f"{r['layer']:<44} {r['gmac']:>6.3f}  {cells}")
        total_rho += sum(rr)
        total_torch += sum(t)
    print(f"sum of the layers' fwd+dx+dw: rho {total_rho:.0f} ms, PyTorch {total_torch:.0f} ms, "
          f"ratio (PyTorch time / rho time) {total_torch / total_rho:.2f}")


if __name__ == "__main__":
    main()
