"""One training loop for every arm, the same code on CUDA (bf16 autocast) and on the CPU.

Data lives on the device as tensors and is batched by slicing a seeded permutation: no DataLoader,
no per-sample Python. Without augmentation the teacher's training logits are computed once (by the
teacher run itself) and indexed per batch. The final epoch is what is reported: nothing here looks at
the test set before training ends.
"""
from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelSpec, RunConfig, derive_seed
from .data import DataBundle
from .distill import RCDTargets, kd_loss, make_variant
from .models import MODELS, build_model


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss."""


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


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


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device) -> torch.Tensor:
    """Logits (float32, CPU) in eval mode, batch by batch."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        with _autocast(device):
            out.append(model(x[i: i + batch_size].to(device, non_blocking=True)).float().cpu())
    return torch.cat(out)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up, then cosine decay to zero at the last step."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainResult:
    model: nn.Module
    test_logits: torch.Tensor
    train_logits: torch.Tensor
    train_accuracy: float
    seconds: float
    epoch_log: list = field(default_factory=list)


def train(cfg: RunConfig, data: DataBundle, device: str | torch.device = "auto",
          teacher_train_logits: Optional[torch.Tensor] = None, teacher: Optional[nn.Module] = None,
          progress: Optional[Callable[[str], None]] = print) -> TrainResult:
    """Train the run `cfg` on `data` and return its final-epoch model and logits."""
    dev = resolve_device(device) if isinstance(device, str) else device
    t = cfg.train
    started = time.perf_counter()
    model = build_for_data(cfg.model, data, cfg.init_seed).to(dev)
    if dev.type == "cuda" and data.x_train.dim() == 4:
        model = model.to(memory_format=torch.channels_last)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    n = len(y)

    distilling = cfg.arm in ("kd", "rcd")
    variant = make_variant(cfg.variant, cfg.variant_args) if distilling else None
    live_teacher = distilling and (variant.needs_teacher_model or t["augment"])
    if live_teacher:
        if teacher is None:
            raise ValueError(f"{cfg.label}: this run needs the teacher model (feature variant or augmentation)")
        teacher = teacher.to(dev).eval()
    elif cfg.arm == "kd" or (cfg.arm == "rcd" and cfg.rcd_noise in ("teacher_scaled", "permuted")):
        if teacher_train_logits is None:
            raise ValueError(f"{cfg.label}: the teacher's training logits are needed")
    t_logits = teacher_train_logits.float().to(dev) if teacher_train_logits is not None else None
    rcd = (RCDTargets(cfg.rcd_noise, n, data.n_classes, cfg.noise_seed, teacher_train_logits).to(dev)
           if cfg.arm == "rcd" else None)
    feature_noise = torch.Generator().manual_seed(derive_seed(cfg.noise_seed, "features")) if cfg.arm == "rcd" else None

    extra_params = variant.attach(model, teacher, x[:2]) if variant is not None and live_teacher else []
    params = list(model.parameters()) + extra_params
    if t["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=t["lr"], momentum=t["momentum"], nesterov=t["momentum"] > 0,
                              weight_decay=t["weight_decay"])
    else:
        opt = torch.optim.AdamW(params, lr=t["lr"], weight_decay=t["weight_decay"])

    order = torch.Generator().manual_seed(cfg.order_seed)
    aug_gen = torch.Generator().manual_seed(derive_seed(cfg.order_seed, "augment"))
    torch.manual_seed(derive_seed(cfg.order_seed, "dropout"))  # dropout draws from the global stream
    bs = t["batch_size"]
    steps_per_epoch = max(1, n // bs + (1 if n % bs > 1 else 0))  # a trailing batch of one is dropped (BatchNorm)
    total, warmup = t["epochs"] * steps_per_epoch, t["warmup_epochs"] * steps_per_epoch
    log, step = [], 0
    for epoch in range(1, t["epochs"] + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=order).to(dev)
        loss_sum = torch.zeros((), device=dev)
        for b in range(steps_per_epoch):
            idx = perm[b * bs: (b + 1) * bs]
            xb, yb = x[idx], y[idx]
            if t["augment"]:
                xb = random_crop_flip(xb, aug_gen)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, warmup, t["lr"])
            with _autocast(dev):
                out = model(xb)
                if not distilling:
                    loss = F.cross_entropy(out.float(), yb, label_smoothing=t["label_smoothing"])
                else:
                    if live_teacher:
                        with torch.no_grad():
                            target = teacher(xb).float()
                    else:
                        target = t_logits[idx] if t_logits is not None else None
                    if rcd is not None:
                        target = rcd(idx)
                    loss = kd_loss(out.float(), target, yb, cfg.alpha, cfg.temperature, t["label_smoothing"])
                    if live_teacher:
                        loss = loss + variant.feature_loss(feature_noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            step += 1
        mean_loss = float(loss_sum) / steps_per_epoch  # one device sync per epoch
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(f"run {cfg.label} ({cfg.hash}): non-finite loss {mean_loss} at epoch {epoch}; "
                                     f"lower train.lr (now {t['lr']}) or check the inputs")
        secs = time.perf_counter() - t0
        log.append({"epoch": epoch, "loss": mean_loss, "seconds": secs})
        if progress:
            progress(f"  {cfg.label}: epoch {epoch}/{t['epochs']} loss {mean_loss:.4f} ({secs:.1f} s)")
    if variant is not None:
        variant.detach()
    eb = t["eval_batch_size"]
    train_logits = predict(model, data.x_train, eb, dev)
    test_logits = predict(model, data.x_test, eb, dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    train_acc = float((train_logits.argmax(1) == data.y_train).float().mean())
    return TrainResult(model=model.cpu(), test_logits=test_logits, train_logits=train_logits,
                       train_accuracy=train_acc, seconds=time.perf_counter() - started, epoch_log=log)
