"""An independent PyTorch implementation of rho's pre-training (docs/method.md), for references.

Used by scripts/make_step_fixtures.py (three full steps per method, recorded for rho's step-parity
test) and scripts/torch_reference_pretrain.py (whole runs on `rho synth` data, compared with rho
under the same `rho eval`). Written from the paper and PySlowFast's semantics, not from rho's
code: plain PyTorch modules, `torch.optim.SGD` wrapped by a LARS step, the ρ-clip losses of
docs/method.md §2, the momentum encoder, MoCo's queue and SwAV's Sinkhorn-Knopp.

Module names follow rho's module paths (`stem.unit.conv`, `stages.2.blocks.0.a.bn`,
`projector.linears.1`, ...), so a state dict maps to rho's naming by renaming BatchNorm's
`weight`/`bias` to `gamma`/`beta` (see `to_rho_names`).
"""
import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


# --------------------------------------------------------------------------------------------
# Backbone: a Slow-pathway ResNet (PySlowFast `ResNet`, ARCH slow), basic or bottleneck blocks.
# --------------------------------------------------------------------------------------------

@dataclass
class BackboneSpec:
    stem_width: int
    depths: tuple
    inner: tuple  # bottleneck inner width (basic: the block width)
    out: tuple
    bottleneck: bool

    @staticmethod
    def preset(name):
        if name == "slow_r18_tiny":
            return BackboneSpec(8, (1, 1, 1, 1), (8, 16, 32, 64), (8, 16, 32, 64), False)
        if name == "slow_r18":
            return BackboneSpec(64, (2, 2, 2, 2), (64, 128, 256, 512), (64, 128, 256, 512), False)
        if name == "slow_r50_tiny":
            return BackboneSpec(8, (3, 4, 6, 3), (8, 16, 32, 64), (32, 64, 128, 256), True)
        if name == "step_fixture":
            # The step-parity fixture: Slow R-18 layout at widths 4-8 (scripts/make_step_fixtures.py).
            return BackboneSpec(4, (1, 1, 1, 1), (4, 4, 8, 8), (4, 4, 8, 8), False)
        raise ValueError(f"unknown backbone {name}")


def msra_conv(cin, cout, kernel, stride):
    conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=tuple(k // 2 for k in kernel), bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


class ConvBn(nn.Module):
    def __init__(self, cin, cout, kernel, stride=(1, 1, 1)):
        super().__init__()
        self.conv = msra_conv(cin, cout, kernel, stride)
        self.bn = nn.BatchNorm3d(cout, eps=1e-5, momentum=0.1)

    def forward(self, x):
        return self.bn(self.conv(x))


class Block(nn.Module):
    """Basic (kt×3×3 → 1×3×3) or bottleneck (kt×1×1 → 1×3×3 → 1×1×1); stride on the 3×3."""

    def __init__(self, cin, inner, cout, kt, stride, bottleneck):
        super().__init__()
        s = (1, stride, stride)
        if bottleneck:
            self.a = ConvBn(cin, inner, (kt, 1, 1))
            self.b = ConvBn(inner, inner, (1, 3, 3), s)
            self.c = ConvBn(inner, cout, (1, 1, 1))
        else:
            self.a = ConvBn(cin, cout, (kt, 3, 3), s)
            self.b = ConvBn(cout, cout, (1, 3, 3))
            self.c = None
        self.shortcut = ConvBn(cin, cout, (1, 1, 1), s) if (cin != cout or stride != 1) else None

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        y = F.relu(self.a(x))
        y = self.b(y) if self.c is None else self.c(F.relu(self.b(y)))
        return F.relu(y + skip)


class Stage(nn.Module):
    def __init__(self, cin, inner, cout, depth, kt, stride, bottleneck):
        super().__init__()
        self.blocks = nn.ModuleList(
            [Block(cin if i == 0 else cout, inner, cout, kt, stride if i == 0 else 1, bottleneck) for i in range(depth)]
        )

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


class Stem(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.unit = ConvBn(3, width, (1, 7, 7), (1, 2, 2))

    def forward(self, x):
        return F.max_pool3d(F.relu(self.unit(x)), (1, 3, 3), (1, 2, 2), (0, 1, 1))


class SlowResNet(nn.Module):
    def __init__(self, spec: BackboneSpec):
        super().__init__()
        self.stem = Stem(spec.stem_width)
        cin, stages = spec.stem_width, []
        for i in range(4):
            stages.append(Stage(cin, spec.inner[i], spec.out[i], spec.depths[i], 3 if i >= 2 else 1,
                                1 if i == 0 else 2, spec.bottleneck))
            cin = spec.out[i]
        self.stages = nn.ModuleList(stages)
        self.feature_dim = cin

    def forward(self, x):
        x = self.stem(x)
        for s in self.stages:
            x = s(x)
        return x.mean(dim=(2, 3, 4))


# --------------------------------------------------------------------------------------------
# Heads (docs/method.md §1.2): Linear(in→H), (L−1)×[BN1d → ReLU → Linear]; with BN only the
# last has a bias. PySlowFast's "c2 xavier fill": kaiming-uniform with a = 1, bias 0.
# --------------------------------------------------------------------------------------------

class Mlp(nn.Module):
    def __init__(self, cin, hidden, cout, layers, bn, init="c2_xavier", out_bn=False):
        super().__init__()
        lin, norms = [], []
        for i in range(layers):
            last = i + 1 == layers
            fin = cin if i == 0 else hidden
            fout = cout if last else hidden
            # out_bn: SimSiam's output BatchNorm without affine; the Linear before it has no bias.
            layer = nn.Linear(fin, fout, bias=(last and not out_bn) or (not last and not bn))
            # "torch_default" keeps nn.Linear's own init: U(±1/√fan_in) for weights and biases.
            if init in ("c2_xavier", "c2_xavier_torch_bias"):
                nn.init.kaiming_uniform_(layer.weight, a=1)
            if init in ("c2_xavier", "torch_scale_zero_bias") and layer.bias is not None:
                nn.init.zeros_(layer.bias)
            lin.append(layer)
            if not last and bn:
                norms.append(nn.BatchNorm1d(fout, eps=1e-5, momentum=0.1))
        self.linears = nn.ModuleList(lin)
        self.norms = nn.ModuleList(norms)
        self.output_norm = nn.BatchNorm1d(cout, eps=1e-5, momentum=0.1, affine=False) if out_bn else None

    def forward(self, x):
        n = len(self.linears)
        for i, layer in enumerate(self.linears):
            x = layer(x)
            if i + 1 < n:
                if len(self.norms) > i:
                    x = self.norms[i](x)
                x = F.relu(x)
        return x if self.output_norm is None else self.output_norm(x)


class Prototypes(nn.Module):
    def __init__(self, count, dim):
        super().__init__()
        bound = math.sqrt(3.0 / dim)
        self.weight = nn.Parameter(torch.empty(count, dim).uniform_(-bound, bound))


@dataclass
class MethodSpec:
    kind: str  # moco | byol | simclr | swav
    proj_layers: int
    proj_hidden: int
    proj_dim: int
    proj_bn: bool
    temperature: float = 0.1
    momentum_base: float = 0.994
    queue_len: int = 65536
    predictor_hidden: int = 4096
    prototypes: int = 1000
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    freeze_prototypes_epochs: float = 1.0
    head_init: str = "c2_xavier"
    proj_out_bn: bool = False

    @staticmethod
    def preset(kind, **kw):
        base = {
            "moco": dict(proj_layers=3, proj_hidden=2048, proj_dim=128, proj_bn=False, momentum_base=0.994),
            "byol": dict(proj_layers=2, proj_hidden=4096, proj_dim=256, proj_bn=True, momentum_base=0.996),
            "simclr": dict(proj_layers=3, proj_hidden=2048, proj_dim=128, proj_bn=True),
            "swav": dict(proj_layers=3, proj_hidden=2048, proj_dim=128, proj_bn=True),
        }[kind]
        base.update(kw)
        return MethodSpec(kind=kind, **base)


class SslNet(nn.Module):
    def __init__(self, backbone: SlowResNet, m: MethodSpec):
        super().__init__()
        self.backbone = backbone
        self.projector = Mlp(backbone.feature_dim, m.proj_hidden, m.proj_dim, m.proj_layers, m.proj_bn, m.head_init,
                             m.proj_out_bn)
        self.predictor = (Mlp(m.proj_dim, m.predictor_hidden, m.proj_dim, 2, True, m.head_init)
                          if m.kind == "byol" else None)
        self.prototypes = Prototypes(m.prototypes, m.proj_dim) if m.kind == "swav" else None

    def project(self, x):
        return self.projector(self.backbone(x))

    def predict(self, z):
        return z if self.predictor is None else self.predictor(z)


def is_bn_param(name):
    """BatchNorm γ/β (the group without weight decay and without LARS)."""
    return name.endswith(("bn.weight", "bn.bias")) or ".norms." in name


def to_rho_names(state_dict, prefix=""):
    """A state dict with rho's keys (BatchNorm weight/bias → gamma/beta, no batch counters)."""
    out = {}
    for k, v in state_dict.items():
        if k.endswith("num_batches_tracked"):
            continue
        if is_bn_param(k) and k.endswith(".weight"):
            k = k[: -len("weight")] + "gamma"
        elif is_bn_param(k) and k.endswith(".bias"):
            k = k[: -len("bias")] + "beta"
        out[prefix + k] = v
        stem = k.removesuffix("running_mean")
        if stem != k and stem + "weight" not in state_dict and torch.is_tensor(v):
            # A BatchNorm without affine: rho keeps its γ = 1 and β = 0 (never trained).
            out[prefix + stem + "gamma"] = torch.ones_like(v)
            out[prefix + stem + "beta"] = torch.zeros_like(v)
    return out


# --------------------------------------------------------------------------------------------
# Optimiser (docs/method.md §4.2): torch SGD (momentum 0.9, Nesterov, dampening 0) in two
# groups, BN γ/β with `bn_weight_decay`, the rest with `weight_decay`; LARS (PySlowFast's
# `LARS`, clip off) rescales the gradients of every tensor with more than one dimension before
# the SGD step.
# --------------------------------------------------------------------------------------------

class Optimizer:
    def __init__(self, net, lars, weight_decay, bn_weight_decay=0.0, momentum=0.9, nesterov=True, trust=0.001,
                 predictor_lr_multiplier=1.0):
        # Groups: (BN?, predictor?) → params; the predictor's groups run at a multiple of the LR.
        groups = {}
        for n, p in net.named_parameters():
            pred = n.startswith("predictor.") and predictor_lr_multiplier != 1.0
            groups.setdefault((is_bn_param(n), pred), []).append(p)
        self.sgd = torch.optim.SGD(
            [{"params": ps, "weight_decay": bn_weight_decay if bn else weight_decay,
              "lr_mult": predictor_lr_multiplier if pred else 1.0}
             for (bn, pred), ps in sorted(groups.items())],
            lr=0.0, momentum=momentum, nesterov=nesterov, dampening=0.0,
        )
        self.lars, self.trust = lars, trust

    @torch.no_grad()
    def step(self, lr):
        for g in self.sgd.param_groups:
            g["lr"] = lr * g["lr_mult"]
        if not self.lars:
            self.sgd.step()
            return
        saved = []
        for g in self.sgd.param_groups:
            wd = g["weight_decay"]
            saved.append(wd)
            g["weight_decay"] = 0.0
            for p in g["params"]:
                if p.grad is None or p.ndim == 1:
                    continue
                pn, gn = torch.norm(p), torch.norm(p.grad)
                if pn != 0 and gn != 0:
                    lam = self.trust * pn / (gn + pn * wd + 1e-8)
                    p.grad += wd * p
                    p.grad *= lam
        self.sgd.step()
        for g, wd in zip(self.sgd.param_groups, saved):
            g["weight_decay"] = wd

    def momentum_buffer(self, p):
        s = self.sgd.state.get(p, {})
        return s.get("momentum_buffer")


@dataclass
class Schedule:
    """Linear warm-up to the cosine's value at W, then a half cosine over all E epochs (to 0)."""
    base_lr: float
    warmup_start: float
    warmup_epochs: float
    epochs: float

    def cosine(self, e):
        return self.base_lr * 0.5 * (1.0 + math.cos(math.pi * e / self.epochs))

    def lr(self, e):
        if e < self.warmup_epochs:
            end = self.cosine(self.warmup_epochs)
            return self.warmup_start + e * (end - self.warmup_start) / self.warmup_epochs
        return self.cosine(e)


def cosine_momentum(m_base, e, total):
    f = min(max(e / total, 0.0), 1.0) if total > 0 else 1.0
    return 1.0 - (1.0 - m_base) * (math.cos(math.pi * f) + 1.0) / 2.0


# --------------------------------------------------------------------------------------------
# Methods (docs/method.md §2): each clip batch is its own forward (BN statistics per clip),
# sub-losses are averaged over the ρ query clips (the paper's mean).
# --------------------------------------------------------------------------------------------

class MomentumTarget:
    """θ_m ← m·θ_m + (1 − m)·θ on parameters only; BN buffers are the target's own."""

    def __init__(self, online: SslNet):
        import copy
        self.net = copy.deepcopy(online)
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, online, m):
        for t, o in zip(self.net.parameters(), online.parameters()):
            t.mul_(m).add_(o.detach(), alpha=1.0 - m)


def sinkhorn(scores, eps, iters):
    q = torch.exp((scores - scores.max()) / eps).t()  # [K, B]
    k, b = q.shape
    q = q / q.sum()
    for _ in range(iters):
        q = q / q.sum(dim=1, keepdim=True) / k
        q = q / q.sum(dim=0, keepdim=True) / b
    return (q * b).t()


@dataclass
class Trainer:
    net: SslNet
    method: MethodSpec
    opt: Optimizer
    target: MomentumTarget = None
    queue: torch.Tensor = None  # [K, d]
    queue_ids: torch.Tensor = None  # [K] video id of each key (−1: the random init)
    queue_ptr: int = 0
    exclude_own_video: bool = False
    shuffle_bn_splits: int = 1  # MoCo's shuffle-BN on one device (1: off)
    logs: dict = field(default_factory=dict)
    seen: tuple = None  # (queries or predictions, targets) of the last step, normalised, detached
    grads: dict = None  # the last step's gradients before the optimiser, by parameter name

    @staticmethod
    def build(net, method, opt):
        t = Trainer(net=net, method=method, opt=opt)
        if method.kind in ("moco", "byol"):
            t.target = MomentumTarget(net)
        if method.kind == "moco":
            stdv = 1.0 / math.sqrt(method.proj_dim / 3)
            t.queue = torch.empty(method.queue_len, method.proj_dim, dtype=next(net.parameters()).dtype)
            t.queue.uniform_(-stdv, stdv)
            t.queue_ids = torch.full((method.queue_len,), -1, dtype=torch.long)
        return t

    def step(self, clips, epoch, total_epochs, lr, video_ids=None, skip_optimizer=False):
        """One training step on V clip batches [B, 3, T, H, W]; returns the loss (float)."""
        m = self.method
        if m.kind == "swav":
            with torch.no_grad():
                w = self.net.prototypes.weight
                w.copy_(F.normalize(w, dim=1))
        mom = None
        if self.target is not None:
            mom = cosine_momentum(m.momentum_base, epoch, total_epochs)
            self.target.update(self.net, mom)
        loss, metrics = getattr(self, "_" + m.kind)(clips, epoch, video_ids)
        self.opt.sgd.zero_grad(set_to_none=True)
        loss.backward()
        if m.kind == "swav" and epoch < m.freeze_prototypes_epochs:
            self.net.prototypes.weight.grad = None
        # The gradients as back-propagated (the LARS step rescales them in place).
        self.grads = {n: p.grad.detach().clone() for n, p in self.net.named_parameters() if p.grad is not None}
        if not skip_optimizer:
            self.opt.step(lr)
        metrics["loss"] = loss.item()
        if mom is not None:
            metrics["momentum"] = mom
        self.logs = metrics
        return loss

    def _keys(self, clips):
        """The target's normalised projections, each clip batch on its own; with shuffle-BN the
        batch is permuted and encoded in `shuffle_bn_splits` sub-batches (own BN statistics)."""
        with torch.no_grad():
            if self.shuffle_bn_splits <= 1:
                return [F.normalize(self.target.net.project(c), dim=1) for c in clips]
            keys = []
            for c in clips:
                perm = torch.randperm(c.shape[0])
                parts = torch.tensor_split(c[perm], self.shuffle_bn_splits)
                k = torch.cat([F.normalize(self.target.net.project(x), dim=1) for x in parts])
                keys.append(k[torch.argsort(perm)])
            return keys

    def _byol(self, clips, epoch, ids):
        z_t = self._keys(clips)
        total, pos, cross = 0.0, 0.0, 0.0
        self.seen = ([], z_t)
        for i, c in enumerate(clips):
            p = F.normalize(self.net.predict(self.net.project(c)), dim=1)
            self.seen[0].append(p.detach())
            li = sum(-2.0 * (p * z_t[j]).sum(1).mean() for j in range(len(clips)) if j != i)
            total = total + li / (len(clips) - 1)
        total = total / len(clips)
        return total, {"pos_sim": -total.item() / 2}

    def _moco(self, clips, epoch, ids):
        keys = self._keys(clips)
        queue = self.queue.clone()
        t = self.method.temperature
        total = 0.0
        self.seen = ([], keys)
        for i, c in enumerate(clips):
            q = F.normalize(self.net.project(c), dim=1)
            self.seen[0].append(q.detach())
            neg = q @ queue.t() / t  # [B, K]
            if self.exclude_own_video and ids is not None:
                own = ids.view(-1, 1) == self.queue_ids.view(1, -1)
                neg = neg.masked_fill(own, float("-inf"))
            rows = []
            for j, k in enumerate(keys):
                if j == i:
                    continue
                pos = (q * k).sum(1, keepdim=True) / t
                logits = torch.cat([pos, neg], dim=1)
                rows.append(F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long)))
            total = total + sum(rows) / len(rows)
        total = total / len(clips)
        with torch.no_grad():
            for k in keys:
                n = k.shape[0]
                idx = (torch.arange(n) + self.queue_ptr) % self.queue.shape[0]
                self.queue[idx] = k.to(self.queue.dtype)
                if ids is not None:
                    self.queue_ids[idx] = ids
                self.queue_ptr = (self.queue_ptr + n) % self.queue.shape[0]
        return total, {}

    def _simclr(self, clips, epoch, ids):
        z = [F.normalize(self.net.project(c), dim=1) for c in clips]
        self.seen = ([x.detach() for x in z], [x.detach() for x in z])
        t = self.method.temperature
        total = 0.0
        pairs = [(i, i + 1) for i in range(len(z) - 1)]
        for a, b in pairs:
            x = torch.cat([z[a], z[b]], 0)
            n = z[a].shape[0]
            sim = x @ x.t() / t
            sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
            target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
            total = total + F.cross_entropy(sim, target)
        return total / len(pairs), {}

    def _swav(self, clips, epoch, ids):
        m = self.method
        w = self.net.prototypes.weight
        z = [F.normalize(self.net.project(c), dim=1) for c in clips]
        self.seen = ([x.detach() for x in z], [x.detach() for x in z])
        scores = [x @ w.t() for x in z]
        v = len(scores)
        total = 0.0
        for a in range(min(2, v)):
            with torch.no_grad():
                q = sinkhorn(scores[a].detach(), m.sinkhorn_epsilon, m.sinkhorn_iterations)
            for j in range(v):
                if j == a:
                    continue
                total = total - (q * F.log_softmax(scores[j] / m.temperature, dim=1)).sum(1).mean() / (v - 1)
        return total / min(2, v), {}
