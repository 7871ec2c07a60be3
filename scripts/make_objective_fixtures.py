#!/usr/bin/env python3
"""Reference values for rho-objectives, from the `lightly` library (independent of rho).

Writes tests/fixtures/objectives.safetensors: inputs, losses and gradients with respect to the
(unnormalised) embeddings for
  * NT-Xent without a memory bank (SimCLR)            lightly.loss.NTXentLoss
  * NT-Xent with a memory bank (MoCo InfoNCE, queue)  lightly.loss.NTXentLoss(memory_bank_size=(K, d))
  * negative cosine similarity (BYOL)                 lightly.loss.NegativeCosineSimilarity
  * SwAV with 2 high-resolution views and 0/1/2 more  lightly.loss.SwaVLoss, sinkhorn
  * the cosine momentum schedule                      lightly.utils.scheduler.cosine_schedule
  * EMA of parameters                                 lightly.models.utils.update_momentum

Needs: torch, lightly, safetensors (pip).
"""
import os

import torch
from lightly.loss import NegativeCosineSimilarity, NTXentLoss, SwaVLoss
from lightly.loss.swav_loss import sinkhorn
from lightly.models.utils import update_momentum
from lightly.utils.scheduler import cosine_schedule
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "objectives.safetensors")


def leaf(t):
    return t.clone().requires_grad_(True)


def main():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(42)
    fx = {}
    B, D, K = 8, 16, 32

    # SimCLR: NT-Xent over one pair.
    a, b = leaf(torch.randn(B, D, generator=g)), leaf(torch.randn(B, D, generator=g))
    loss = NTXentLoss(temperature=0.1)(a, b)
    loss.backward()
    fx.update({"ntxent.z0": a.detach(), "ntxent.z1": b.detach(), "ntxent.loss": loss.detach().reshape(1),
               "ntxent.grad_z0": a.grad, "ntxent.grad_z1": b.grad})

    # MoCo: InfoNCE with a queue of K negatives.
    fn = NTXentLoss(temperature=0.1, memory_bank_size=(K, D))
    queue = fn.memory_bank.bank.clone()
    q, k = leaf(torch.randn(B, D, generator=g)), torch.randn(B, D, generator=g)
    loss = fn(q, k)  # q requires grad, so the bank is updated with normalize(k)
    loss.backward()
    fx.update({"moco.q": q.detach(), "moco.k": k, "moco.queue": queue, "moco.loss": loss.detach().reshape(1),
               "moco.grad_q": q.grad, "moco.queue_after": fn.memory_bank.bank.clone()})

    # BYOL: negative cosine similarity (rho's loss is twice this).
    p, z = leaf(torch.randn(B, D, generator=g)), torch.randn(B, D, generator=g)
    loss = NegativeCosineSimilarity()(p, z)
    loss.backward()
    fx.update({"byol.p": p.detach(), "byol.z": z, "byol.loss": loss.detach().reshape(1), "byol.grad_p": p.grad})

    # SwAV: scores of normalised embeddings against normalised prototypes.
    P = 10
    protos = torch.nn.functional.normalize(torch.randn(P, D, generator=g), dim=1)
    fx["swav.prototypes"] = protos
    for views in (2, 3, 4):
        zs = [torch.randn(B, D, generator=g) for _ in range(views)]
        scores = [leaf(torch.nn.functional.normalize(zv, dim=1) @ protos.t()) for zv in zs]
        loss = SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)(scores[:2], scores[2:])
        loss.backward()
        for v in range(views):
            fx[f"swav{views}.scores{v}"] = scores[v].detach()
            fx[f"swav{views}.grad{v}"] = scores[v].grad
        fx[f"swav{views}.loss"] = loss.detach().reshape(1)
    fx["sinkhorn.scores"] = fx["swav2.scores0"].clone()
    fx["sinkhorn.q"] = sinkhorn(fx["swav2.scores0"], iterations=3, epsilon=0.05)

    # Momentum schedule: lightly divides by (max_steps - 1).
    steps = 11
    fx["schedule.byol"] = torch.tensor([cosine_schedule(s, steps, 0.996, 1.0) for s in range(steps)], dtype=torch.float64)

    # EMA of parameters.
    online, target = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    fx.update({"ema.online_w": online.weight.detach().clone(), "ema.target_w": target.weight.detach().clone()})
    update_momentum(online, target, m=0.99)
    fx["ema.after_w"] = target.weight.detach().clone()

    save_file({k: v.contiguous().clone() for k, v in fx.items()}, OUT)
    print(f"wrote {OUT}: {os.path.getsize(OUT) / 1e3:.1f} kB, {len(fx)} tensors")


if __name__ == "__main__":
    main()
