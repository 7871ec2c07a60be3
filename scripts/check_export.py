#!/usr/bin/env python3
"""Checks that weights exported by rho load into the PyTorch reference models with strict=True
and reproduce rho's features and logits.

  slow_r50     -> pytorchvideo.models.hub.slow_r50()        (pytorchvideo naming)
  r3d_18       -> torchvision.models.video.r3d_18()         (torchvision naming)
  r2plus1d_18  -> torchvision.models.video.r2plus1d_18()    (torchvision naming)

Usage: scripts/check_export.py [--rho target/release/rho] [--size 224] [--frames 8]
Needs torch, pytorchvideo, torchvision, safetensors, numpy (scripts/setup.sh --python).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file


def reference(arch):
    if arch == "slow_r50":
        from pytorchvideo.models.hub import slow_r50

        model = slow_r50(pretrained=False)
        trunk = lambda x: torch.nn.Sequential(*model.blocks[:5])(x)
        return model, "pytorchvideo", trunk
    from torchvision.models import video

    model = getattr(video, arch)(num_classes=400)

    def trunk(x):
        x = model.stem(x)
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            x = layer(x)
        return x

    return model, "torchvision", trunk


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rho", default="target/release/rho")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--archs", default="slow_r50,r3d_18,r2plus1d_18")
    ap.add_argument("--backend", default=None, help="rho --backend (e.g. cuda)")
    ap.add_argument("--device", default="cpu", help="torch device for the reference")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--tf32", choices=["on", "off"], default="off",
                    help="let PyTorch's CUDA convolutions and matmuls use TF32 (its cuDNN default; CubeCL's "
                    "f32 kernels use TF32 on GPUs that have it), or compute in full f32")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
    torch.backends.cuda.matmul.allow_tf32 = args.tf32 == "on"
    rho = [args.rho] + (["--backend", args.backend] if args.backend else [])
    failed = False
    with tempfile.TemporaryDirectory() as d:
        clip = os.path.join(d, "clip.npy")
        subprocess.run([args.rho, "make-clip", "--shape", f"2,3,{args.frames},{args.size},{args.size}", "--out", clip], check=True)
        for arch in args.archs.split(","):
            model, naming, trunk = reference(arch)
            w = os.path.join(d, f"{arch}.safetensors")
            subprocess.run([args.rho, "init", "--arch", arch, "--num-classes", "400", "--naming", naming, "--out", w], check=True)
            sd = load_file(w)
            model.load_state_dict(sd, strict=True)  # raises on any missing/unexpected key
            model.eval().to(args.device)
            feats, logits = os.path.join(d, "f.npy"), os.path.join(d, "l.npy")
            subprocess.run(rho + ["embed", "--arch", arch, "--weights", w, "--input", clip, "--out", feats, "--logits", logits], check=True)
            x = torch.from_numpy(np.load(clip)).to(args.device)
            f_ref = trunk(x).mean(dim=(2, 3, 4)).cpu().numpy()
            l_ref = model(x).cpu().numpy()
            ef, el = rel(np.load(feats), f_ref), rel(np.load(logits), l_ref)
            ok = ef < args.tol and el < args.tol
            failed |= not ok
            print(f"{arch:12s} TF32 {args.tf32:3s} strict load OK; features rel. L2 {ef:.2e}, logits rel. L2 {el:.2e} "
                  f"(tol {args.tol:.0e}) {'OK' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
