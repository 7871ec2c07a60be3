#!/usr/bin/env python3
"""Three full pre-training steps per method in float64, for rho's step-parity test.

Writes tests/fixtures/steps.safetensors. For each case (a method with its optimiser) it runs three
consecutive steps of scripts/torch_ssl.py (independent PyTorch code: online network = tiny Slow
backbone + projector (+ predictor / prototypes), MoCo/BYOL momentum target, MoCo queue, SwAV
prototype freezing, LARS with PySlowFast's groups or SGD, warm-up + cosine LR, cosine momentum)
from fixed initial weights on fixed clips (4 videos × ρ = 3 clips of 3×4×32×32), and records per
step: the loss, LR and momentum; every parameter's gradient; every parameter and BN running
statistic after the step; the SGD momentum buffers; the target after its update (and its BN
statistics after its forwards); MoCo's queue after enqueueing.

The choices the test assumes (docs/method.md says why rho makes them):
  * the ρ query sub-losses are averaged (the paper), not summed (the released code);
  * the target is updated once per step before the keys, with m at the current fractional epoch;
  * MoCo: one softmax row per positive, the queue before this step's keys as negatives less the
    keys of the query's own video (from earlier steps), all ρ keys enqueued in clip order; SimCLR: consecutive pairs, NT-Xent; SwAV: codes from the first two
    clips, prototypes re-normalised before the step and without gradient before epoch 0.3;
  * LARS: trust 0.001, clip off, eps 1e-8, 1-D tensors and BN γ/β unscaled and undecayed;
    SGD: momentum 0.9, Nesterov, dampening 0;
  * BatchNorm in train mode everywhere (target included): batch statistics per clip batch.

Keys: `clips` (uint8 [4, 3, 3, 4, 32, 32]: video, clip, C, T, H, W; a clip is
(u / 255 − 0.45) / 0.225), and per case C: `C.init.<rho path>`, `C.queue0`,
`C.step<s>.{loss,lr,momentum}`, `C.step<s>.grad.<path>`, `C.step<s>.param.<path>`,
`C.step<s>.buf.<path>`, `C.step<s>.target.<path>`, `C.step<s>.queue`. Paths are rho's module
paths; tensors are in PyTorch layout (Linear weights [out, in]).

Needs: torch, safetensors (scripts/setup.sh --python).
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
import torch_ssl as ts  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "steps.safetensors")

VIDEOS, RHO, FRAMES, SIZE = 4, 3, 4, 32
ITERS_PER_EPOCH, EPOCHS, STEPS = 4, 1.0, 3

# case → (method, optimiser, extra method settings, what is recorded); heads are narrow so the
# fixture stays small. "full": every tensor at every step. "light" (a variant of a full case, to
# keep the file under 3 MB): the loss, LR and m of every step, step 1's gradients, and the
# parameters, momentum buffers and target after step 3.
CASES = {
    "byol": ("byol", "lars", {}, "full"),
    "moco": ("moco", "sgd", {}, "full"),
    "simclr": ("simclr", "lars", {}, "full"),
    "swav": ("swav", "lars", {}, "full"),
    "byol_out_bn": ("byol", "lars", {"proj_out_bn": True}, "light"),
}
HEADS = dict(proj_hidden=16, proj_dim=8, predictor_hidden=16, prototypes=10, queue_len=24,
             momentum_base=0.5, freeze_prototypes_epochs=0.3)
OPTIM = {
    "lars": dict(lars=True, weight_decay=1e-2, base_lr=2.0, warmup_start=0.2),
    "sgd": dict(lars=False, weight_decay=1e-3, base_lr=0.1, warmup_start=0.01),
}
WARMUP_EPOCHS = 0.5  # steps at epochs 0 and 0.25 warm up, the step at 0.5 is on the cosine


def perturb_batch_norms(net, g):
    """Non-trivial γ, β and running statistics, so that a mix-up of them cannot pass."""
    with torch.no_grad():
        for name, mod in net.named_modules():
            if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.BatchNorm3d)):
                c = mod.num_features
                if mod.affine:
                    mod.weight.copy_(1.0 + 0.2 * torch.randn(c, generator=g))
                    mod.bias.copy_(0.2 * torch.randn(c, generator=g))
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                mod.running_var.copy_(1.0 + 0.5 * torch.rand(c, generator=g))


def state(net):
    """Parameters and BN running statistics in rho's naming."""
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    return ts.to_rho_names(sd)


def rho_name(name):
    return next(iter(ts.to_rho_names({name: 0})))


def run_case(name, method_kind, optim_kind, extra, record, clips_u8, fx):
    torch.manual_seed(1)  # the same backbone for every case
    g = torch.Generator().manual_seed(7)
    spec = ts.MethodSpec.preset(method_kind, **HEADS, **extra)
    net = ts.SslNet(ts.SlowResNet(ts.BackboneSpec.preset("step_fixture")), spec)
    perturb_batch_norms(net, g)
    o = OPTIM[optim_kind]
    opt = ts.Optimizer(net, lars=o["lars"], weight_decay=o["weight_decay"])
    sched = ts.Schedule(o["base_lr"], o["warmup_start"], WARMUP_EPOCHS, EPOCHS)
    tr = ts.Trainer.build(net, spec, opt)
    tr.exclude_own_video = True  # the fixture's videos are 0..3 at every step
    for k, v in state(net).items():
        fx[f"{name}.init.{k}"] = v
    if tr.queue is not None:
        fx[f"{name}.queue0"] = tr.queue.clone()
    x = (clips_u8.double() / 255.0 - 0.45) / 0.225  # [videos, clips, 3, T, H, W]
    for s in range(STEPS):
        epoch = s / ITERS_PER_EPOCH
        lr = sched.lr(epoch)
        views = [x[:, v] for v in range(RHO)]
        loss = tr.step(views, epoch, EPOCHS, lr, video_ids=torch.arange(VIDEOS))
        p = f"{name}.step{s + 1}"
        fx[f"{p}.loss"] = loss.detach().reshape(1)
        fx[f"{p}.lr"] = torch.tensor([lr])
        fx[f"{p}.momentum"] = torch.tensor([tr.logs.get("momentum", float("nan"))])
        print(f"{name} step {s + 1}: loss {loss.item():.6f} lr {lr:.4f} m {tr.logs.get('momentum', float('nan')):.4f}")
        if record == "full" or s == 0:
            for n, g in tr.grads.items():
                fx[f"{p}.grad.{rho_name(n)}"] = g
        if record == "light" and s + 1 < STEPS:
            continue
        for n, prm in net.named_parameters():
            buf = opt.momentum_buffer(prm)
            if buf is not None:
                fx[f"{p}.buf.{rho_name(n)}"] = buf.clone()
        for k, v in state(net).items():
            fx[f"{p}.param.{k}"] = v
        if tr.target is not None:
            for k, v in state(tr.target.net).items():
                fx[f"{p}.target.{k}"] = v
        if tr.queue is not None:
            fx[f"{p}.queue"] = tr.queue.clone()


def main():
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(0)
    # Smooth random videos (a few low-frequency blobs) rather than white noise.
    base = torch.rand(VIDEOS, RHO, 3, FRAMES, SIZE // 8, SIZE // 8, generator=g)
    up = torch.nn.functional.interpolate(base.reshape(-1, 3 * FRAMES, SIZE // 8, SIZE // 8), size=(SIZE, SIZE),
                                         mode="bilinear", align_corners=False)
    noise = 0.15 * torch.rand(VIDEOS * RHO, 3 * FRAMES, SIZE, SIZE, generator=g)
    clips_u8 = ((up + noise).clamp(0, 1) * 255).round().to(torch.uint8).reshape(VIDEOS, RHO, 3, FRAMES, SIZE, SIZE)
    fx = {"clips": clips_u8}
    for name, (kind, optim, extra, record) in CASES.items():
        run_case(name, kind, optim, extra, record, clips_u8, fx)
    fx = {k: v.contiguous() for k, v in fx.items()}
    save_file(fx, OUT)
    print(f"wrote {OUT}: {len(fx)} tensors, {os.path.getsize(OUT) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
