#!/usr/bin/env python3
"""Reference outputs of torchvision's tensor colour and resize ops for rho-data's augmentations.

Writes tests/fixtures/augment.safetensors: a small clip [T=2, 3, 12, 16] in [0, 1] (the whole clip is
treated as one image for contrast, as the released code does with its tall image) and
  brightness 1.3, contrast 0.6, saturation 1.5, hue +0.12, grayscale,
  a crop box resized bilinearly (align_corners=False, no antialias) to 8×8.
Needs torch, torchvision, safetensors.
"""
import os

import torch
import torchvision.transforms.v2.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "augment.safetensors")


def tall(clip):
    # [T, 3, H, W] -> one image [3, T*H, W], as the released code jitters a clip
    t, c, h, w = clip.shape
    return clip.permute(1, 0, 2, 3).reshape(c, t * h, w)


def untall(img, t):
    c, th, w = img.shape
    return img.reshape(c, t, th // t, w).permute(1, 0, 2, 3)


def main():
    g = torch.Generator().manual_seed(5)
    clip = torch.rand(2, 3, 12, 16, generator=g)
    fx = {"clip": clip}
    img = tall(clip)
    fx["brightness"] = untall(F.adjust_brightness(img, 1.3), 2)
    fx["contrast"] = untall(F.adjust_contrast(img, 0.6), 2)
    fx["saturation"] = untall(F.adjust_saturation(img, 1.5), 2)
    fx["hue"] = untall(F.adjust_hue(img, 0.12), 2)
    fx["grayscale"] = untall(F.rgb_to_grayscale(img, num_output_channels=3), 2)
    # crop top=2, left=3, height=7, width=9, resized to 8x8
    fx["crop"] = F.resized_crop(clip, 2, 3, 7, 9, [8, 8], antialias=False)
    save_file({k: v.contiguous() for k, v in fx.items()}, OUT)
    print(f"wrote {OUT}: {os.path.getsize(OUT) / 1e3:.1f} kB")


if __name__ == "__main__":
    main()
