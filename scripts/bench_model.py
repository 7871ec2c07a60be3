#!/usr/bin/env python3
"""PyTorch side of `rho bench model`: the same network, batch and train step (forward,
cross-entropy, backward, SGD momentum 0.9 / wd 1e-4) on the CPU or a CUDA GPU.

Prints one JSON object like `rho bench model --json`.
Networks: slow_r50 (pytorchvideo), r3d_18 and r2plus1d_18 (torchvision).
"""
import argparse
import resource
import json
import statistics
import time

import torch


def build(arch, classes):
    if arch == "slow_r50":
        from pytorchvideo.models.resnet import create_resnet

        # slow_r50 with a global head pool, so any input size works (as in rho).
        return create_resnet(model_depth=50, model_num_class=classes, dropout_rate=0.0,
                             stem_conv_kernel_size=(1, 7, 7), head_pool=None,
                             head_output_with_global_average=True)
    from torchvision.models import video

    return getattr(video, arch)(num_classes=classes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="r3d_18")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--classes", type=int, default=400)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = build(args.arch, args.classes).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=dev)
    y = torch.tensor([(i * 7) % args.classes for i in range(args.batch)], device=dev)
    times = []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss.item()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    print(json.dumps({
        "engine": "pytorch",
        "backend": f"torch-{torch.__version__}-{dev.type}",
        "arch": args.arch,
        "input": [args.batch, 3, args.frames, args.size, args.size],
        "threads": torch.get_num_threads(),
        "step_ms_median": med,
        "step_ms_min": min(times),
        "step_ms_max": max(times),
        "clips_per_s": args.batch / (med / 1e3),
        "peak_mem_mb": (torch.cuda.max_memory_allocated() / 2**20) if dev.type == "cuda" else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
