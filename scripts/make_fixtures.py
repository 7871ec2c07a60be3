#!/usr/bin/env python3
"""Writes the PyTorch reference fixtures for rho-model's parity tests into tests/fixtures/.

Needs: torch, pytorchvideo, torchvision, safetensors, yacs (scripts/setup.sh --python).

* slow_r50_tiny.safetensors      pytorchvideo `create_resnet` with the slow_r50 layer table and every
                                 width divided by 8, a 10-class head, random weights and non-trivial
                                 BatchNorm statistics (pytorchvideo naming, with BN counters).
* slow_r50_tiny_io.safetensors   input [2,3,8,56,56], pooled features [2,256] and logits [2,10],
                                 computed in eval mode.
* slow_r50_tiny_pyslowfast.pyth  the same weights as a PySlowFast SSL checkpoint: a torch.save zip
                                 with `model_state` (keys `backbone.s1.pathway0_stem.conv.weight`, …,
                                 an SSL MLP head and a momentum encoder `backbone_hist.*`),
                                 `optimizer_state`, `epoch` and a yacs `cfg`.
* torchvision_keys.json          state_dict key → shape of torchvision's r3d_18 and r2plus1d_18,
                                 so the naming tables are checked against the real modules.
* slow_r50_keys.json             the same for pytorchvideo's full-size slow_r50.
"""
import argparse
import json
import os

import torch
from pytorchvideo.models.resnet import create_resnet
from pytorchvideo.models.hub import slow_r50
from safetensors.torch import save_file


def randomize_bn(model, gen):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=gen)
            m.bias.data = 0.2 * torch.randn(c, generator=gen)
            m.running_mean.data = 0.1 * torch.randn(c, generator=gen)
            m.running_var.data = 0.5 + torch.rand(c, generator=gen)
            m.num_batches_tracked.fill_(7)


def tiny_slow_r50(num_classes):
    return create_resnet(
        input_channel=3,
        model_depth=50,
        model_num_class=num_classes,
        dropout_rate=0.5,
        stem_dim_out=8,
        stem_conv_kernel_size=(1, 7, 7),
        head_pool_kernel_size=(8, 2, 2),  # global for a 56x56 input (res5 is 8x2x2)
    )


def pytorchvideo_to_pyslowfast(key):
    """blocks.0.conv.weight -> s1.pathway0_stem.conv.weight, etc."""
    parts = key.split(".")
    if parts[0] != "blocks":
        raise ValueError(key)
    stage = int(parts[1])
    if stage == 0:
        sub = {"conv": "conv", "norm": "bn"}[parts[2]]
        return ".".join(["s1.pathway0_stem", sub] + parts[3:])
    if stage == 5:
        return ".".join(["head.projection"] + parts[3:])
    block = int(parts[3])
    rest = parts[4:]
    prefix = f"s{stage + 1}.pathway0_res{block}"
    if rest[0] == "branch1_conv":
        return ".".join([prefix, "branch1"] + rest[1:])
    if rest[0] == "branch1_norm":
        return ".".join([prefix, "branch1_bn"] + rest[1:])
    assert rest[0] == "branch2"
    name = {"conv_a": "a", "norm_a": "a_bn", "conv_b": "b", "norm_b": "b_bn", "conv_c": "c", "norm_c": "c_bn"}[rest[1]]
    return ".".join([prefix, "branch2", name] + rest[2:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)

    model = tiny_slow_r50(10)
    randomize_bn(model, gen)
    with torch.no_grad():
        model.blocks[5].proj.weight.normal_(0, 0.5, generator=gen)
        model.blocks[5].proj.bias.normal_(0, 0.5, generator=gen)
    model.eval()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(args.out, "slow_r50_tiny.safetensors"), metadata={"format": "pt"})

    x = torch.randn(2, 3, 8, 56, 56, generator=gen)
    with torch.no_grad():
        h = x
        for b in model.blocks[:5]:
            h = b(h)
        features = h.mean(dim=(2, 3, 4))
        logits = model(x)
        # The head's own pooling must agree with the global mean used for features.
        assert torch.allclose(model.blocks[5].proj(features), logits, atol=1e-5)
    save_file(
        {"input": x.contiguous(), "features": features.contiguous(), "logits": logits.contiguous()},
        os.path.join(args.out, "slow_r50_tiny_io.safetensors"),
    )

    # A PySlowFast-style SSL checkpoint of the same backbone.
    from yacs.config import CfgNode

    cfg = CfgNode()
    cfg.MODEL = CfgNode()
    cfg.MODEL.ARCH = "slow"
    cfg.MODEL.MODEL_NAME = "ContrastiveModel"
    cfg.CONTRASTIVE = CfgNode()
    cfg.CONTRASTIVE.TYPE = "byol"
    cfg.CONTRASTIVE.T = 0.5
    state = {}
    for k, v in sd.items():
        if k.startswith("blocks.5."):
            continue  # an SSL checkpoint has an MLP head instead of the classifier
        state["backbone." + pytorchvideo_to_pyslowfast(k)] = v
    state["backbone.head.projection.layers.0.weight"] = torch.randn(32, 256, generator=gen)
    state["backbone.head.projection.layers.2.weight"] = torch.randn(16, 32, generator=gen)
    state["backbone.head.projection.layers.2.bias"] = torch.randn(16, generator=gen)
    state["backbone_hist.s1.pathway0_stem.conv.weight"] = torch.zeros(8, 3, 1, 7, 7)
    checkpoint = {
        "epoch": 200,
        "model_state": state,
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.0, "momentum": 0.9}]},
        "cfg": cfg.dump(),
    }
    torch.save(checkpoint, os.path.join(args.out, "slow_r50_tiny_pyslowfast.pyth"))

    # Key tables of the real full-size modules (names and shapes only).
    from torchvision.models.video import r2plus1d_18, r3d_18

    def keys(m):
        return {k: list(v.shape) for k, v in m.state_dict().items()}

    with open(os.path.join(args.out, "torchvision_keys.json"), "w") as f:
        json.dump({"r3d_18": keys(r3d_18(num_classes=400)), "r2plus1d_18": keys(r2plus1d_18(num_classes=400))}, f, indent=0, sort_keys=True)
    with open(os.path.join(args.out, "slow_r50_keys.json"), "w") as f:
        json.dump({"slow_r50": keys(slow_r50(pretrained=False))}, f, indent=0, sort_keys=True)
    for name in sorted(os.listdir(args.out)):
        print(f"{name}: {os.path.getsize(os.path.join(args.out, name)) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
