"""One training loop for every arm, the same code on CUDA (bf16 autocast) and on the CPU.

Data lives on the device as tensors and is batched by slicing a seeded permutation: no DataLoader,
no per-sample Python. What an arm minimises is the arm object's business (`kdlib.arms`); the loop only
feeds it batches and logs each loss term per epoch, with one device sync per epoch. The final epoch is
what is reported: nothing here looks at the test set (`kdlib.evaluate` does, after training).
"""
from __future__ import annotations

import contextlib
import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .arms import FEATURE_SCALE_EXAMPLES, Batch
from .config import ModelSpec, RunConfig, derive_seed
from .data import DataBundle
from .models import MODELS, build_model

# Intra-op threads for CPU training. Fixed, so a run's numbers do not depend on the machine's core count
# or OMP_NUM_THREADS (reductions split across threads round differently); parallelism comes from running
# several runs at once (the executors' workers). Recorded in every run's provenance.
CPU_THREADS = 1


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str) or device.split(":")[0] not in DEVICES:
        raise ValueError(f"unknown device {device!r}; allowed: auto, cpu, cuda (or cuda:N)")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


@contextlib.contextmanager
def cpu_threads(n: int = CPU_THREADS):
    """Run the block with `n` intra-op threads, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_for_data(spec: ModelSpec, data: DataBundle, seed: int) -> nn.Module:
    """Build a model for a dataset, passing the dataset's vocabulary size to text models."""
    args = dict(spec.args)
    params = inspect.signature(MODELS.get(spec.name)).parameters
    if "vocab_size" in params and "vocab_size" in data.extra and "vocab_size" not in args:
        args["vocab_size"] = data.extra["vocab_size"]
    return build_model(ModelSpec(spec.name, args), data.input_shape, data.n_classes, seed)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Batched random crop (zero padding `pad`) and horizontal flip on the device."""
    b, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    rows = (torch.arange(h, device=x.device)[None] + dy[:, None])[:, None, :, None].expand(b, x.shape[1], h, w)
    cols = (torch.arange(w, device=x.device)[None] + dx[:, None])[:, None, None, :].expand(b, x.shape[1], h, w)
    out = _crop(xp, rows, cols)
    flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def _crop(xp: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    b, c, h, w = rows.shape
    row_sel = xp.gather(2, rows[..., :1].expand(b, c, h, xp.shape[3]))
    return row_sel.gather(3, cols)


def autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str = "cosine") -> float:
    """Linear warm-up, then cosine decay to zero at the last step (`cosine`), a constant rate
    (`constant`), or a linear rise over the warm-up and a linear fall to zero (`onecycle`)."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "constant":
        return base
    if schedule == "onecycle":
        return base * (1.0 - progress)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(params, t: dict) -> torch.optim.Optimizer:
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=t["lr"], momentum=t["momentum"],
                               nesterov=t["nesterov"] and t["momentum"] > 0, weight_decay=t["weight_decay"])
    return torch.optim.AdamW(params, lr=t["lr"], weight_decay=t["weight_decay"])


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size + (1 if n % batch_size > 1 else 0))  # a trailing batch of one is dropped (BatchNorm)


def gpu_utilisation(dev: torch.device) -> dict:
    """The GPU's busy percentage over the driver's last sampling period (nvidia-ml-py), for the ledger."""
    if dev.type != "cuda":
        return {}
    try:
        return {"gpu_util": float(torch.cuda.utilization(dev))}
    except Exception:  # no NVML bindings on this machine
        return {}


@dataclass
class TrainResult:
    model: nn.Module
    seconds: float
    epoch_log: list = field(default_factory=list)  # per epoch: loss (total), each term, seconds


def train(cfg: RunConfig, data: DataBundle, arm, device: str | torch.device = "auto",
          teacher_model: Optional[nn.Module] = None, teacher_logits: Optional[torch.Tensor] = None) -> TrainResult:
    """Train the run `cfg` on `data` with the loss of `arm` (see `kdlib.arms.build_arm`); returns the
    final-epoch model (still on `device`) and the epoch log."""
    dev = resolve_device(device)
    t = cfg.train
    started = time.perf_counter()
    model = build_for_data(cfg.model, data, cfg.init_seed).to(dev)
    if dev.type == "cuda" and data.x_train.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    n = len(y)
    # the examples a feature variant reads its shapes and (rcd) the teacher's feature scale from
    extra_params = arm.bind(model, x[:FEATURE_SCALE_EXAMPLES], teacher_model, teacher_logits, dev)
    opt = make_optimizer(list(model.parameters()) + extra_params, t)

    order = torch.Generator().manual_seed(cfg.order_seed)
    aug_gen = torch.Generator().manual_seed(derive_seed(cfg.order_seed, "augment"))
    torch.manual_seed(derive_seed(cfg.order_seed, "dropout"))  # dropout draws from the global stream
    bs = t["batch_size"]
    n_steps = steps_per_epoch(n, bs)
    total, warmup = t["epochs"] * n_steps, t["warmup_epochs"] * n_steps
    log, step, names = [], 0, None
    try:
        for epoch in range(1, t["epochs"] + 1):
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=order).to(dev)
            sums = None
            for b in range(n_steps):
                idx = perm[b * bs: (b + 1) * bs]
                xb, yb = x[idx], y[idx]
                if t["augment"]:
                    xb = random_crop_flip(xb, aug_gen)
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, total, warmup, t["lr"], t["schedule"])
                with autocast(dev):
                    out = model(xb)
                    loss, terms = arm.loss(out, Batch(xb, yb, idx))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                names = names or ["loss"] + list(terms)
                vals = torch.stack([loss.detach().float()] + [v.detach().float() for v in terms.values()])
                sums = vals if sums is None else sums + vals
                step += 1
            means = (sums / n_steps).tolist()  # one device sync per epoch
            if not math.isfinite(means[0]):
                raise NonFiniteLossError(f"run {cfg.label} ({cfg.hash}): non-finite loss {means[0]} at epoch {epoch}; "
                                         f"lower train.lr (now {t['lr']}) or check the inputs")
            log.append({"epoch": epoch, **dict(zip(names, means)), "seconds": time.perf_counter() - t0,
                        **gpu_utilisation(dev)})
    finally:
        arm.close()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return TrainResult(model=model, seconds=time.perf_counter() - started, epoch_log=log)
