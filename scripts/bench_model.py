#!/usr/bin/env python3
"""PyTorch side of `rho bench model`: the same network, batch and train step (forward,
cross-entropy, backward, SGD momentum 0.9 / wd 1e-4) on the CPU or a CUDA GPU.

Prints one JSON object like `rho bench model --json`. `--amp bf16|f16` runs the step under
autocast (with a GradScaler for f16), `--tf32 on` lets CUDA convolutions and matmuls use TF32
(PyTorch's cuDNN default).
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
    ap.add_argument("--amp", choices=["off", "bf16", "f16"], default="off")
    ap.add_argument("--tf32", choices=["on", "off"], default="on")
    args = ap.parse_args()
    torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
    amp_dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(args.amp)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = build(args.arch, args.classes).to(dev).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=dev)
    y = torch.tensor([(i * 7) % args.classes for i in range(args.batch)], device=dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=args.amp == "f16")
    times, warm = [], []
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        loss.item()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        (times if i >= args.warmup else warm).append((time.perf_counter() - t0) * 1e3)
    med = statistics.median(times)
    print(json.dumps({
        "engine": "pytorch",
        "backend": f"torch-{torch.__version__}-{dev.type}",
        "arch": args.arch,
        "input": [args.batch, 3, args.frames, args.size, args.size],
        "threads": torch.get_num_threads(),
        "precision": args.amp if args.amp != "off" else ("f32-tf32" if args.tf32 == "on" and dev.type == "cuda" else "f32"),
        "first_step_ms": (warm or times)[0],
        "step_ms_median": med,
        "step_ms_min": min(times),
        "step_ms_max": max(times),
        "clips_per_s": args.batch / (med / 1e3),
        "peak_mem_mb": (torch.cuda.max_memory_allocated() / 2**20) if dev.type == "cuda" else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
