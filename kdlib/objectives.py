"""KD objectives by name: the logit term that kd and rcd students minimise against their targets (the
teacher's logits in kd, RCD noise in their place in rcd).

An objective is a pure function

    objective(student_logits, target_logits, labels, temperature, **args) -> {term: (coefficient, value)}

and its KD term is the sum of coefficient * value. Every arm weighs it by the KD weight w (`kd_weight`, the
paper's alpha under one of its readings):

    loss = (1 - w) CE(z_s, y) + w * sum(coefficient * value)

`value` is the tensor the trainer logs per epoch under the term's name, `coefficient` a plain number (T^2, or
a term's weight times T^2). The numbers are kept apart from the tensors so that Hinton's loss is computed
with exactly the operations it had before objectives had names, (1 - w) CE + (w T^2) KL: every stored run is
reproduced bit for bit.

To add an objective: register a function here with `args` (its arguments and their defaults) and `check`
(which validates them), and name it in study.yaml (`objective: NAME`, `objective_args: {...}`).
"""
from __future__ import annotations

import math
from typing import Any, Optional

import torch
import torch.nn.functional as F

from .config import ConfigError
from .registry import Registry

OBJECTIVES = Registry("KD objective")
DEFAULT = "hinton"


def nonnegative_weights(name: str, args: dict) -> dict:
    """Every argument is the weight of a term: a finite number >= 0 (an integer is taken as a float, so
    `beta: 8` and `beta: 8.0` are one run)."""
    out = {}
    for key, v in args.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise ConfigError(f"objective_args.{key} of KD objective {name!r} must be a finite number >= 0, got {v!r}")
        out[key] = float(v)
    return out


def check_objective(name: Any, args: Optional[dict] = None) -> dict:
    """The objective's arguments completed with its defaults and validated; an unknown objective or argument,
    or a bad value, fails naming it and what is allowed."""
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown KD objective {name!r}; allowed: {', '.join(OBJECTIVES.names())}")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ConfigError(f"objective_args of KD objective {name!r} must be a mapping, got {args!r}")
    meta = OBJECTIVES.meta(name)
    unknown = sorted(set(args) - set(meta["args"]))
    if unknown:
        raise ConfigError(f"KD objective {name!r} has no argument(s) {unknown}; it takes: "
                          f"{', '.join(meta['args']) or 'none'}")
    return meta["check"](name, {**meta["args"], **args})


def kd_terms(z_s: torch.Tensor, z_t: torch.Tensor, y: torch.Tensor, w: float, temperature: float,
             label_smoothing: float = 0.0, objective: str = DEFAULT, args: Optional[dict] = None):
    """(1 - w) CE + w * the objective's KD term, and the named terms the trainer logs (ce, then the
    objective's values). w = 0 is exactly CE whatever the objective."""
    ce = F.cross_entropy(z_s, y, label_smoothing=label_smoothing)
    parts = OBJECTIVES.get(objective)(z_s, z_t, y, temperature, **(args or {}))
    weighted = [w * c * v for c, v in parts.values()]  # (w c) v: Python numbers first, then one tensor product
    total = (1.0 - w) * ce + sum(weighted[1:], weighted[0])
    return total, {"ce": ce, **{name: v for name, (_, v) in parts.items()}}


@OBJECTIVES.register("hinton", args={}, check=nonnegative_weights,
                     description="Hinton et al. (2015): T² KL(softmax(z_t / T) || softmax(z_s / T)), the paper's KD")
def hinton(z_s, z_t, y, temperature):
    kl = F.kl_div(F.log_softmax(z_s / temperature, 1), F.log_softmax(z_t / temperature, 1),
                  reduction="batchmean", log_target=True)
    return {"kd": (temperature ** 2, kl)}


def decoupled(z: torch.Tensor, y: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The two distributions DKD compares, as log-probabilities at temperature T: the binary
    [p_target, 1 - p_target] (B x 2) and the distribution over the non-target classes alone, renormalised
    (B x (C - 1), classes in their order with the target left out). Computed from logits by log-sum-exp, so
    neither underflows where p_target is near 0 or 1 (the authors' log of a probability does)."""
    z = z / temperature
    target = F.one_hot(y, z.shape[1]).bool()
    rest = z[~target].view(len(z), -1)
    lse = torch.logsumexp(z, 1, keepdim=True)
    binary = torch.cat([z[target].view(-1, 1), torch.logsumexp(rest, 1, keepdim=True)], 1) - lse
    return binary, F.log_softmax(rest, 1)


@OBJECTIVES.register("dkd", args={"alpha": 1.0, "beta": 8.0}, check=nonnegative_weights,
                     description="Decoupled KD (Zhao et al., CVPR 2022): alpha T² TCKD + beta T² NCKD, the KL "
                                 "divergences of the target-class probability and of the distribution over the other "
                                 "classes, as in the authors' code (their warm-up of the term over 20 epochs is not used)")
def dkd(z_s, z_t, y, temperature, alpha, beta):
    """Decoupled Knowledge Distillation (Zhao et al., CVPR 2022), as in the authors' code
    (megvii-research/mdistiller, mdistiller/distillers/DKD.py, `dkd_loss`):

        TCKD = KL(b_t || b_s), b = [p_target, 1 - p_target] of softmax(z / T)       (target class)
        NCKD = KL(q_t || q_s), q = softmax(z / T) over the non-target classes only  (non-target classes)
        DKD  = alpha T^2 TCKD + beta T^2 NCKD, each KL averaged over the batch

    The target class is the label y, also in rcd, where noise takes the teacher's place. Defaults alpha = 1,
    beta = 8 are the authors' CIFAR-100 setting (their T = 4 is the study's default too). With two classes
    the non-target distribution has one class and NCKD is 0.

    How it enters the study's loss: the authors minimise CE + min(epoch / 20, 1) * DKD (CE weight 1, the
    DKD term warmed up linearly over 20 epochs). Here DKD takes the place of Hinton's term in the study's
    form, (1 - w) CE + w (alpha T^2 TCKD + beta T^2 NCKD), so kd and rcd run at the same KD weights as every
    other entry; the warm-up is not used (the loss has no epoch, and the same loss runs from the first step
    in kd and rcd alike)."""
    t2 = temperature ** 2
    bs, qs = decoupled(z_s, y, temperature)
    bt, qt = decoupled(z_t, y, temperature)
    tckd = F.kl_div(bs, bt, reduction="batchmean", log_target=True)
    nckd = F.kl_div(qs, qt, reduction="batchmean", log_target=True)
    return {"tckd": (alpha * t2, tckd), "nckd": (beta * t2, nckd)}
