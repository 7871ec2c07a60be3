#!/usr/bin/env python3
"""A PyTorch pre-training run of the demo's setting, to compare with rho on the same data.

    .venv/bin/python scripts/torch_reference_pretrain.py --data data/synth --recipe configs/demo/byol.toml \
        --seed 0 --out runs/torch_byol_s0 [--set data.rho=2 ...]

trains on the frame folders that `rho synth` writes (its train.txt) with the settings of a rho recipe
(read from its TOML, so both sides run the same recipe; a setting the reference does not implement
is refused), and writes OUT/backbone.safetensors in rho's naming, so that `rho eval` evaluates this
backbone exactly as it evaluates rho's, and OUT/metrics.jsonl (loss, LR, momentum and the collapse
diagnostics per step).

Everything is independent of rho's code: the network, heads, losses, optimiser and schedules are
scripts/torch_ssl.py; the data pipeline below is written from the paper's sampling and augmentation
(docs/method.md §3.1–§3.2; frame folders: docs/data.md §4): ρ clip starts uniform over the
video, T frames evenly spaced over the T·τ span, per clip one random-resized crop (area range,
aspect 3/4–4/3), horizontal flip, colour jitter (p 0.8, random order, contrast over the whole
clip), grayscale (p 0.2), normalisation (mean 0.45, std 0.225). ρ = 1 gives two crops of one
clip, as in rho.
"""
import argparse
import itertools
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import torch_ssl as ts  # noqa: E402


def read_list(data, name):
    items = []
    with open(os.path.join(data, name)) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                items.append((os.path.join(data, parts[0]), int(parts[1]), int(parts[2])))
    return items


def load_frames(path, n):
    return np.stack([np.asarray(Image.open(os.path.join(path, f"img_{i + 1:05d}.jpg")).convert("RGB"))
                     for i in range(n)])


LUMA = torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)


def gray(x):
    return (x * LUMA).sum(1, keepdim=True)


def hue_shift(x, shift):
    """torchvision's adjust_hue on a [T, 3, H, W] batch."""
    import torchvision.transforms.v2.functional as TF
    return TF.adjust_hue(x, shift)


class ClipSet(torch.utils.data.Dataset):
    """Samples ρ augmented clips of one video: [ρ, 3, T, S, S]."""

    def __init__(self, videos, args):
        self.videos, self.a = videos, args

    def __len__(self):
        return len(self.videos)

    def clip(self, frames, rng, start=None):
        a = self.a
        n = frames.shape[0]
        span = a.frames * a.stride  # frame folders are read as 30 fps, the reference rate
        if start is None:
            start = rng.randint(0, max(n - span, 0))
        idx = np.linspace(start, start + span - 1, a.frames).astype(int).clip(max=n - 1)
        x = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2).float() / 255.0  # [T, 3, H, W]
        if rng.random() < a.jitter_p:
            ops = ["b", "c", "s", "h"]
            rng.shuffle(ops)
            for op in ops:
                if op == "b":
                    x = (x * rng.uniform(1 - a.jitter[0], 1 + a.jitter[0])).clamp(0, 1)
                elif op == "c":
                    f = rng.uniform(1 - a.jitter[1], 1 + a.jitter[1])
                    x = (f * x + (1 - f) * gray(x).mean()).clamp(0, 1)
                elif op == "s":
                    f = rng.uniform(1 - a.jitter[2], 1 + a.jitter[2])
                    x = (f * x + (1 - f) * gray(x)).clamp(0, 1)
                else:
                    x = hue_shift(x, rng.uniform(-a.jitter[3], a.jitter[3]))
        if rng.random() < a.grayscale_p:
            x = gray(x).expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        top, left, ch, cw = self.crop_box(h, w, rng)
        x = F.interpolate(x[:, :, top:top + ch, left:left + cw], size=(a.crop, a.crop), mode="bilinear",
                          align_corners=False, antialias=False)
        if rng.random() < a.flip_p:
            x = x.flip(-1)
        x = (x - 0.45) / 0.225
        return x.permute(1, 0, 2, 3)  # [3, T, S, S]

    def crop_box(self, h, w, rng):
        area = h * w
        lo, hi = math.log(3 / 4), math.log(4 / 3)
        for _ in range(10):
            target = area * rng.uniform(*self.a.area)
            ratio = math.exp(rng.uniform(lo, hi))
            cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                return rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw
        return 0, 0, h, w

    def __getitem__(self, i):
        rng = random.Random(hash((self.a.seed, self.epoch, i)))
        frames = self.videos[i]
        if self.a.rho == 1:  # two crops of one moment
            start = rng.randint(0, max(frames.shape[0] - self.a.frames * self.a.stride, 0))
            return torch.stack([self.clip(frames, rng, start) for _ in range(2)]), i
        return torch.stack([self.clip(frames, rng) for _ in range(self.a.rho)]), i


def rho_stream(prefix):
    """The batches `rho pretrain` trains on, in order, as written by
    crates/rho-train/examples/dump_batches.rs (PREFIX.f32 and PREFIX.json)."""
    with open(prefix + ".json") as f:
        meta = json.load(f)
    arr = np.memmap(prefix + ".f32", dtype="<f4", mode="r").reshape(len(meta["videos"]), *meta["shape"])
    for k, ids in enumerate(meta["videos"]):
        yield torch.from_numpy(np.array(arr[k])), torch.tensor(ids)


def load_rho_weights(net, path):
    """Copies every tensor of `net` from a safetensors file in rho's naming (PyTorch layout)."""
    from safetensors.torch import load_file
    src = load_file(path)
    sd = net.state_dict()
    names = {k: next(iter(ts.to_rho_names({k: None})), None) for k in sd}
    missing = [k for k, r in names.items() if r is not None and r not in src]
    if missing:
        raise SystemExit(f"{path} lacks {missing[:5]}")
    with torch.no_grad():
        for k, r in names.items():
            if r in src:
                sd[k].copy_(src[r].to(sd[k].dtype).reshape(sd[k].shape))


def diagnostics(queries, targets):
    """pos / cross-video cosine of queries against targets, ‖mean target‖, embedding std."""
    pos, cross = [], []
    for i, q in enumerate(queries):
        for j, t in enumerate(targets):
            if i == j:
                continue
            s = q @ t.t()
            n = s.shape[0]
            pos.append(s.diag().mean().item())
            cross.append(((s.sum() - s.diag().sum()) / (n * n - n)).item())
    mean_norm = float(np.mean([t.mean(0).norm().item() for t in targets]))
    std = float(np.mean([q.std(0).mean().item() for q in queries]))
    return {"pos_sim": float(np.mean(pos)), "cross_sim": float(np.mean(cross)), "target_mean_norm": mean_norm,
            "emb_std": std}


RECIPE_KEYS = {
    # rho recipe key → (flag, conversion); everything the reference implements.
    "batch": "batch", "epochs": "epochs", "model.arch": "arch",
    "data.rho": "rho", "data.frames": "frames", "data.stride": "stride", "data.crop": "crop",
    "data.augment.area": "area", "data.augment.jitter": "jitter", "data.augment.jitter_p": "jitter_p",
    "data.augment.grayscale_p": "grayscale_p", "data.augment.flip_p": "flip_p",
    "optim.optimizer": "optimizer", "optim.base_lr": "base_lr", "optim.reference_batch": "reference_batch",
    "optim.weight_decay": "weight_decay", "optim.warmup_epochs": "warmup_epochs",
    "optim.warmup_start_lr": "warmup_start_lr", "optim.momentum": "sgd_momentum",
    "optim.predictor_lr_multiplier": "predictor_lr_multiplier", "optim.lars_trust": "lars_trust",
    "method.kind": "method", "method.momentum_base": "momentum_base", "method.queue_len": "queue_len",
    "method.temperature": "temperature", "method.head_init": "head_init",
    "method.exclude_own_video": "exclude_own_video", "method.shuffle_bn": "shuffle_bn",
    "method.shuffle_bn_splits": "shuffle_bn_splits", "method.proj_layers": "proj_layers",
    "method.proj_hidden": "proj_hidden", "method.proj_dim": "proj_dim", "method.proj_bn": "proj_bn",
    "method.proj_out_bn": "proj_out_bn",
    "method.predictor_hidden": "predictor_hidden", "method.prototypes": "prototypes",
    "method.sinkhorn_epsilon": "sinkhorn_epsilon", "method.sinkhorn_iterations": "sinkhorn_iterations",
    "method.freeze_prototypes_epochs": "freeze_prototypes_epochs",
}
# Recipe keys whose non-default values the reference does not implement (it refuses them).
UNSUPPORTED = {"data.augment.blur_p": 0.0, "method.aggregation": "mean", "method.multi_positive": False,
               "method.all_pairs": False, "optim.nesterov": True, "optim.bn_weight_decay": 0.0,
               "optim.accumulation": 1, "model.sync_bn": "off", "data.max_timespan_s": None}
# rho's defaults for those keys where they differ from what the reference implements: a recipe
# that leaves such a key out trains rho with the default, so the reference must refuse it too.
RHO_DEFAULTS = {"data.augment.blur_p": 0.5}
IGNORED = {"name", "output", "seed", "data.index", "data.prefix", "data.format", "data.short_side",
           "data.workers"}


def recipe_values(path, overrides):
    """The rho recipe at `path` with `key=value` overrides, flattened to dotted keys."""
    import tomllib
    with open(path, "rb") as f:
        text = tomllib.load(f)
    flat = {}

    def walk(t, prefix):
        for k, v in t.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(v, key + ".")
            else:
                flat[key] = v
    walk(text, "")
    for o in overrides:
        k, v = o.split("=", 1)
        try:  # a TOML value; a bare word is a string (as `rho pretrain --set`)
            flat[k.strip()] = tomllib.loads(f"v = {v}")["v"]
        except tomllib.TOMLDecodeError:
            flat[k.strip()] = v
    return flat


def apply_recipe(a, flat):
    for key, value in flat.items():
        if key in IGNORED:
            continue
        if key in UNSUPPORTED:
            if value != UNSUPPORTED[key]:
                raise SystemExit(f"the reference does not implement {key} = {value!r}")
            continue
        if key not in RECIPE_KEYS:
            raise SystemExit(f"the reference does not know recipe key {key}")
        if key == "method.head_init":
            value = {"c2_xavier": "c2_xavier", "pytorch": "torch_default"}[value]
        setattr(a, RECIPE_KEYS[key], value)
    for key, implemented in UNSUPPORTED.items():
        default = RHO_DEFAULTS.get(key, implemented)
        if key not in flat and default != implemented:
            raise SystemExit(f"the recipe leaves {key} at rho's default {default!r}, which the reference "
                             f"does not implement; set {key} = {implemented!r} in the recipe to compare")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a `rho synth` output folder")
    p.add_argument("--recipe", required=True, help="a rho pre-training recipe (e.g. configs/demo/byol.toml)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="override a recipe key as `rho pretrain --set` does, e.g. data.rho=2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--init-from", help="start from these weights (every tensor of the network, rho's names, "
                   "PyTorch layout), e.g. a rho network's initial state")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many steps (the schedules still span the recipe's epochs), to study "
                   "the early phase of many runs")
    p.add_argument("--batches", help="train on rho's own batches (PREFIX.f32/.json from the example "
                   "dump_batches) instead of this script's data pipeline, to separate the two pipelines")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    # Defaults of rho's recipe fields (crates/rho-train/src/recipe.rs) and method presets.
    defaults = dict(arch="slow_r18_tiny", flip_p=0.5, jitter=[0.6, 0.6, 0.6, 0.15], jitter_p=0.8,
                    grayscale_p=0.2, area=[0.2, 0.766], sgd_momentum=0.9, predictor_lr_multiplier=1.0, lars_trust=0.001, momentum_base=None, queue_len=65536,
                    temperature=None, head_init="c2_xavier", exclude_own_video=True, shuffle_bn=False,
                    shuffle_bn_splits=2, proj_layers=None, proj_hidden=None, proj_dim=None, proj_bn=None,
                    proj_out_bn=None, predictor_hidden=None, prototypes=None, sinkhorn_epsilon=None,
                    sinkhorn_iterations=None, freeze_prototypes_epochs=None)
    for k, v in defaults.items():
        setattr(a, k, v)
    apply_recipe(a, recipe_values(a.recipe, a.overrides))
    a.queue_warmup = True

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    items = read_list(a.data, "train.txt")
    videos = [load_frames(path, n) for path, n, _ in items]
    print(f"{len(videos)} videos loaded in {time.time() - t0:.1f} s", flush=True)

    kw = {"head_init": a.head_init, "queue_len": a.queue_len}
    for k in ("momentum_base", "temperature", "proj_layers", "proj_hidden", "proj_dim", "proj_bn",
              "proj_out_bn", "predictor_hidden", "prototypes", "sinkhorn_epsilon", "sinkhorn_iterations",
              "freeze_prototypes_epochs"):
        if getattr(a, k) is not None:
            kw[k] = getattr(a, k)
    spec = ts.MethodSpec.preset(a.method, **kw)
    net = ts.SslNet(ts.SlowResNet(ts.BackboneSpec.preset(a.arch)), spec)
    if a.init_from:
        load_rho_weights(net, a.init_from)
    opt = ts.Optimizer(net, lars=a.optimizer == "lars", weight_decay=a.weight_decay, momentum=a.sgd_momentum,
                       trust=a.lars_trust, predictor_lr_multiplier=a.predictor_lr_multiplier)
    scale = a.batch / a.reference_batch
    sched = ts.Schedule(a.base_lr * scale, a.warmup_start_lr * scale, a.warmup_epochs, a.epochs)
    tr = ts.Trainer.build(net, spec, opt)
    tr.exclude_own_video = bool(a.exclude_own_video)
    tr.shuffle_bn_splits = a.shuffle_bn_splits if a.shuffle_bn else 1
    with open(os.path.join(a.out, "recipe.json"), "w") as f:
        json.dump({k: v for k, v in vars(a).items()}, f, indent=1)

    ds = ClipSet(videos, a)
    iters = len(ds) // a.batch
    total = int(math.ceil(a.epochs * iters))
    # MoCo: steps that only fill the queue (ρ·B keys each), before the schedule's first step.
    warm = math.ceil(a.queue_len / (a.batch * max(a.rho, 2))) if a.method == "moco" else 0
    last = total + warm if a.max_steps is None else min(total + warm, a.max_steps)
    if a.batches:
        with open(a.batches + ".json") as f:
            last = min(last, len(json.load(f)["videos"]))
        stream = rho_stream(a.batches)
    step, opt_steps = 0, 0
    log = open(os.path.join(a.out, "metrics.jsonl"), "w")
    epoch = 0
    while step < last:
        ds.epoch = epoch
        g = torch.Generator().manual_seed(a.seed * 1000 + epoch)
        loader = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, drop_last=True, generator=g,
                                             num_workers=a.workers, persistent_workers=False)
        if a.batches:
            loader = itertools.islice(stream, iters)
        for clips, ids in loader:
            if step >= last:
                break
            e = opt_steps / iters
            lr = sched.lr(e)
            views = [clips[:, v] for v in range(clips.shape[1])]
            skip = step < warm
            loss = tr.step(views, e, a.epochs, lr, video_ids=ids, skip_optimizer=skip)
            if not skip:
                opt_steps += 1
            rec = {"step": step, "epoch": e, "lr": lr, "skipped": skip, **tr.logs}
            if step % 10 == 0 or step + 1 == last:
                rec.update(diagnostics(*tr.seen))
            log.write(json.dumps(rec) + "\n")
            if step % 60 == 0:
                print(f"step {step}/{last} loss {loss.item():.4f} lr {lr:.4f} "
                      f"{ {k: round(v, 4) for k, v in rec.items() if k in ('pos_sim', 'cross_sim', 'emb_std')} } "
                      f"{time.time() - t0:.0f} s", flush=True)
            step += 1
        epoch += 1
    log.close()
    sd = ts.to_rho_names(net.backbone.state_dict())
    save_file({k: v.detach().float().contiguous() for k, v in sd.items()}, os.path.join(a.out, "backbone.safetensors"))
    print(f"done in {time.time() - t0:.0f} s: {a.out}/backbone.safetensors", flush=True)


if __name__ == "__main__":
    main()
