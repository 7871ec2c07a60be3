#!/usr/bin/env python3
"""PyTorch side of rho-model's `conv_bench` example: the same convolution layers (read from
`conv_bench --json`, one JSON object per layer), forward, input gradient and weight gradient each
timed alone (best of 3), printed beside rho's host kernels.
"""
import argparse
import json
import time

import torch


def best_ms(fn, n=3):
    fn()
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best * 1e3


def time_layer(layer):
    """(forward, dX, dW) in ms; each gradient is the backward of one recorded forward alone."""
    conv = torch.nn.Conv3d(layer["in_channels"], layer["out_channels"], layer["kernel"],
                           layer["stride"], layer["padding"], bias=False)
    x = torch.randn(layer["batch"], layer["in_channels"], *layer["input"], requires_grad=True)
    fwd = best_ms(lambda: conv(x))
    y = conv(x)
    g = torch.randn_like(y)
    dx = best_ms(lambda: torch.autograd.grad(y, x, g, retain_graph=True))
    dw = best_ms(lambda: torch.autograd.grad(y, conv.weight, g, retain_graph=True))
    return fwd, dx, dw


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rho", required=True, help="conv_bench --json output")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    layers = [json.loads(line) for line in open(a.rho) if line.startswith("{")]
    if not layers:
        raise SystemExit(f"{a.rho}: no layers (expected the output of conv_bench --json)")
    print(f"{'layer (GF/s: rho/PyTorch)':<44} {'GMAC':>6}  {'fwd':<11} {'dx':<11} {'dw':<11}")
    total_rho = total_torch = 0.0
    for r in layers:
        name = (f"{r['in_channels']}->{r['out_channels']} {r['input']} k{r['kernel']} "
                f"s{r['stride']}")
        rho_ms = (r["fwd_ms"], r["dx_ms"], r["dw_ms"])
        torch_ms = time_layer(r)
        gflops = lambda ms: 2e3 * r["gmac"] / ms
        cells = " ".join(f"{gflops(x):>5.0f}/{gflops(y):<5.0f}" for x, y in zip(rho_ms, torch_ms))
        print(f"{name:<44} {r['gmac']:>6.3f}  {cells}")
        total_rho += sum(rho_ms)
        total_torch += sum(torch_ms)
    print(f"sum of the layers' fwd+dx+dw: rho {total_rho:.0f} ms, PyTorch {total_torch:.0f} ms, "
          f"ratio (PyTorch time / rho time) {total_torch / total_rho:.2f}")


if __name__ == "__main__":
    main()
