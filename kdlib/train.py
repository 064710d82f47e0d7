"""One training loop for every arm, the same code on CUDA (bf16 autocast) and on the CPU (fp32, or bf16
autocast with channels-last images where `train.precision` is bf16).

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
from typing import Callable, Optional

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
    kind, _, index = device.partition(":")
    if device.count(":") > 1 or (":" in device and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"unknown device {device!r}; allowed: auto, cpu, cuda (or cuda:N, N a GPU's number)")
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


def autocast(device: torch.device, precision: str = "fp32"):
    """bf16 autocast on CUDA (whatever `precision` says, as every GPU run has trained), and on the CPU where
    `precision` is bf16; plain fp32 otherwise."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


def channels_last(device: torch.device, precision: str, x: torch.Tensor) -> bool:
    """Images in channels-last memory where convolutions run faster in it: on CUDA, and in bf16 on the CPU
    (oneDNN's bf16 kernels; in fp32 it gains less and changes the rounding of every earlier CPU run)."""
    return x.dim() == 4 and (device.type == "cuda" or precision == "bf16")


def cpu_bf16_units() -> Optional[str]:
    """The CPU's bf16 matrix units that oneDNN uses under bf16 autocast: 'AMX', 'AVX512-BF16', or None
    (then bf16 runs, emulated, slower than fp32)."""
    if torch.cpu._is_amx_tile_supported():
        return "AMX"
    if torch.cpu._is_avx512_bf16_supported():
        return "AVX512-BF16"
    return None


def precision_used(device: torch.device, precision: str, images: bool) -> str:
    """What a run trained in, for its provenance: the arithmetic, the memory format and the units."""
    if device.type == "cuda":
        return "bf16 autocast" + (", channels-last" if images else "") + " (CUDA)"
    if precision != "bf16":
        return "fp32 (CPU)"
    return "bf16 autocast" + (", channels-last" if images else "") + f" (CPU, {cpu_bf16_units() or 'no bf16 units'})"


def bf16_slowdown(repeats: int = 2) -> float:
    """How many times longer a small convolutional block (two 3x3 convolutions of 64 channels with batch-norm
    and GELU, a batch of 32 at 16x16, channels-last) takes forward and backward in bf16 autocast than in
    fp32 on this CPU, one thread, best of `repeats`. Emulated bf16 (no AMX or AVX512-BF16) measured 7-10x
    on an AVX2-only CPU, where the full-scale CIFAR-10 CNN trained 7.7x slower (30 s against 3.9 s a step)."""
    cpu, best = torch.device("cpu"), {}
    with torch.random.fork_rng(devices=[]), cpu_threads():  # the caller's random stream stays as it was
        torch.manual_seed(0)
        block = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.GELU(),
                              nn.Conv2d(64, 64, 3, padding=1)).to(memory_format=torch.channels_last)
        x = torch.randn(32, 64, 16, 16).contiguous(memory_format=torch.channels_last)
        for precision in ("fp32", "bf16"):
            for k in range(repeats + 1):  # the first pass warms up
                t0 = time.perf_counter()
                with autocast(cpu, precision):
                    out = block(x).float().sum()
                out.backward()
                if k:
                    best[precision] = min(best.get(precision, math.inf), time.perf_counter() - t0)
    return best["bf16"] / best["fp32"]


def bf16_warning(device: torch.device, precisions, slowdown: Optional[Callable[[], float]] = None) -> Optional[str]:
    """One line for a training phase or a listing whose CPU runs ask for bf16 on a CPU without bf16 units,
    with how much slower bf16 is here (`slowdown`, by default `bf16_slowdown`, measured only then)."""
    if device.type == "cpu" and "bf16" in set(precisions) and cpu_bf16_units() is None:
        return ("note: runs with precision bf16 train on this CPU without AMX or AVX512-BF16 units: they run "
                "(the same numbers as on a CPU with them need not follow) but slower than in fp32: a probe "
                f"convolution ran {(slowdown or bf16_slowdown)():.1f}x slower in bf16 here")
    return None


def lr_at(step: int, total: int, warmup: int, base: float, schedule: str = "cosine") -> float:
    """Linear warm-up, then cosine decay to zero at the last step (`cosine`), a constant rate
    (`constant`), or a linear rise over the warm-up and a linear fall to zero (`onecycle`); `airbench`
    (Jordan 2024) rises linearly from 0.2 x base to base over the warm-up and falls linearly to 0.07 x base."""
    if schedule == "airbench":
        if step < warmup:
            return base * (0.2 + 0.8 * step / warmup)
        return base * (1.0 - 0.93 * (step - warmup) / max(1, total - warmup))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "constant":
        return base
    if schedule == "onecycle":
        return base * (1.0 - progress)
    return base * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(params, t: dict, norm_biases=()) -> torch.optim.Optimizer:
    """The recipe's optimiser. With `norm_bias_lr_scale` s != 1, the batch-norm biases (`norm_biases`) form their
    own group at s times the learning rate and 1/s times the weight-decay coefficient, so that their decay per
    step is the others' (airbench's bias scaler). Each group carries its `lr_scale` for the schedule."""
    scale = float(t["norm_bias_lr_scale"])
    special = {id(p) for p in norm_biases} if scale != 1.0 else set()
    groups = [{"params": [p for p in params if id(p) not in special], "lr_scale": 1.0,
               "weight_decay": t["weight_decay"]}]
    if special:
        groups.append({"params": [p for p in params if id(p) in special], "lr_scale": scale,
                       "weight_decay": t["weight_decay"] / scale})
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=t["lr"], momentum=t["momentum"], nesterov=t["nesterov"] and t["momentum"] > 0)
    return torch.optim.AdamW(groups, lr=t["lr"])


def norm_biases(model: nn.Module) -> list:
    """The trainable biases of the model's batch-norm layers."""
    return [m.bias for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and m.bias is not None and m.bias.requires_grad]


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


class Lookahead:
    """Airbench's lookahead (Jordan 2024): every `every` steps the weights (and batch-norm statistics) move to
    an exponential moving average of themselves, whose decay rises as (step / total)^3 from 0 towards
    0.95^5; at the end the model takes the average."""

    def __init__(self, model: nn.Module, total: int, every: int = 5):
        self.every, self.total = every, total
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def step(self, model: nn.Module, step: int, final: bool = False) -> None:
        if not final and step % self.every:
            return
        decay = 1.0 if final else 0.95 ** 5 * (step / self.total) ** 3
        for k, v in model.state_dict().items():
            if k in self.ema:
                self.ema[k].lerp_(v, 1.0 - decay)
                v.copy_(self.ema[k])


@dataclass
class TrainResult:
    model: nn.Module
    seconds: float
    epoch_log: list = field(default_factory=list)  # per epoch: loss (total), each term, seconds


def train(cfg: RunConfig, data: DataBundle, arm, device: str | torch.device = "auto",
          teacher_model: Optional[nn.Module] = None, teacher_logits: Optional[torch.Tensor] = None,
          on_epoch: Optional[Callable[[int, int], None]] = None) -> TrainResult:
    """Train the run `cfg` on `data` with the loss of `arm` (see `kdlib.arms.build_arm`); returns the
    final-epoch model (still on `device`) and the epoch log. `on_epoch(epoch, epochs)` hears of each epoch
    done (a progress display; it cannot change the run)."""
    dev = resolve_device(device)
    t = cfg.train
    started = time.perf_counter()
    precision = t["precision"]
    model = build_for_data(cfg.model, data, cfg.init_seed).to(dev)
    x, y = data.x_train.to(dev), data.y_train.to(dev)
    if hasattr(model, "init_from_data"):  # a data-dependent first layer (airbench's whitening), before training
        model.init_from_data(x)
    cl = channels_last(dev, precision, x)
    if cl:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        if teacher_model is not None:
            teacher_model = teacher_model.to(memory_format=torch.channels_last)
    n = len(y)
    # the examples a feature variant reads its shapes and (rcd) the teacher's feature scale from
    extra_params = arm.bind(model, x[:FEATURE_SCALE_EXAMPLES], teacher_model, teacher_logits, dev)
    opt = make_optimizer(list(model.parameters()) + extra_params, t, norm_biases(model))

    order = torch.Generator().manual_seed(cfg.order_seed)
    aug_gen = torch.Generator().manual_seed(derive_seed(cfg.order_seed, "augment"))
    torch.manual_seed(derive_seed(cfg.order_seed, "dropout"))  # dropout draws from the global stream
    bs = t["batch_size"]
    n_steps = steps_per_epoch(n, bs)
    total, warmup = t["epochs"] * n_steps, t["warmup_epochs"] * n_steps
    lookahead = Lookahead(model, total) if t["lookahead"] else None
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
                    xb = random_crop_flip(xb, aug_gen, t["crop_pad"])
                if cl:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, total, warmup, t["lr"], t["schedule"]) * g["lr_scale"]
                with autocast(dev, precision):
                    out = model(xb)
                    loss, terms = arm.loss(out, Batch(xb, yb, idx))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                names = names or ["loss"] + list(terms)
                vals = torch.stack([loss.detach().float()] + [v.detach().float() for v in terms.values()])
                sums = vals if sums is None else sums + vals
                step += 1
                if lookahead is not None:
                    lookahead.step(model, step)
            means = (sums / n_steps).tolist()  # one device sync per epoch
            if not math.isfinite(means[0]):
                raise NonFiniteLossError(f"run {cfg.label} ({cfg.hash}): non-finite loss {means[0]} at epoch {epoch}; "
                                         f"lower train.lr (now {t['lr']}) or check the inputs")
            log.append({"epoch": epoch, **dict(zip(names, means)), "seconds": time.perf_counter() - t0,
                        **gpu_utilisation(dev)})
            if on_epoch is not None:
                on_epoch(epoch, t["epochs"])
        if lookahead is not None:
            lookahead.step(model, step, final=True)
    finally:
        arm.close()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return TrainResult(model=model, seconds=time.perf_counter() - started, epoch_log=log)
