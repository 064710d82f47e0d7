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


# ------------------------------------------------------------------ objectives adopted since (issue: KD objectives
# under the paper's controls). Each keeps the study's form (1 - w) CE + w * term; where the authors' loss weighs
# its CE otherwise, the study file's entry says how its arguments map.
@OBJECTIVES.register("mse", args={"weight": 1.0}, check=nonnegative_weights,
                     description="Kim et al. (IJCAI 2021): the mean squared error between student and teacher "
                                 "logits (KD's limit as T grows); the temperature is not used")
def mse(z_s, z_t, y, temperature, weight):
    """Kim et al., "Comparing Kullback-Leibler divergence and mean squared error loss in knowledge
    distillation" (IJCAI 2021), as in their code (jhoon-oh/kd_data, tools/losses.py `mse_logit`):
    nn.MSELoss()(z_s, z_t), the squared difference averaged over examples *and* classes. Their students
    minimise it alone (alpha = 1, no CE): the study's w = 1."""
    return {"mse": (weight, F.mse_loss(z_s, z_t))}


def _pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of a with the same row of b (the cosine of the centred rows, with the
    authors' eps in the denominator)."""
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


@OBJECTIVES.register("dist", args={"beta": 1.0, "gamma": 1.0}, check=nonnegative_weights,
                     description="DIST (Huang et al., NeurIPS 2022): beta T² (1 - mean inter-class Pearson "
                                 "correlation) + gamma T² (1 - mean intra-class Pearson correlation) of the "
                                 "softmax(z / T) of student and teacher")
def dist(z_s, z_t, y, temperature, beta, gamma):
    """DIST, "Knowledge Distillation from A Stronger Teacher" (Huang et al., NeurIPS 2022), as in the authors'
    code (hunto/image_classification_sota, lib/models/losses/dist_kd.py): with p = softmax(z / T),

        inter = 1 - mean over examples of Pearson(p_s[i, :], p_t[i, :])   (each example's class ranking)
        intra = 1 - mean over classes  of Pearson(p_s[:, c], p_t[:, c])   (each class across the batch)
        DIST  = beta T^2 inter + gamma T^2 intra

    `intra` depends on the batch (its columns are the batch's examples): the loss of one example is not
    defined alone, as in the authors' code. Their CIFAR-100 setting (configs/strategies/distill/dist_cifar.yaml)
    is CE + 2 DIST with beta = gamma = 1 and T = 4: the study's form at w = 0.5 with beta = gamma = 2 is half of
    it. Without the label y: rcd compares with the noise exactly as kd with the teacher."""
    t2 = temperature ** 2
    p_s, p_t = F.softmax(z_s / temperature, 1), F.softmax(z_t / temperature, 1)
    inter = 1 - _pearson_rows(p_s, p_t).mean()
    intra = 1 - _pearson_rows(p_s.t(), p_t.t()).mean()
    return {"inter": (beta * t2, inter), "intra": (gamma * t2, intra)}


def standardise(z: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Each row z-scored: (z - mean) / (eps + std), the standard deviation with Bessel's correction (torch's
    default, as in the authors' `normalize`)."""
    return (z - z.mean(1, keepdim=True)) / (eps + z.std(1, keepdim=True))


@OBJECTIVES.register("ls", args={"weight": 1.0}, check=nonnegative_weights,
                     description="Logit standardisation (Sun et al., CVPR 2024): Hinton's T² KL between the "
                                 "softmax(z / T) of z-scored student and teacher logits")
def ls(z_s, z_t, y, temperature, weight):
    """"Logit Standardization in Knowledge Distillation" (Sun et al., CVPR 2024), as in the authors' code
    (sunshangquan/logit-standardization-KD, mdistiller/distillers/KD.py `kd_loss` with `logit_stand`): both
    logits z-scored per example, then Hinton's T^2 KL(softmax(z_t' / T) || softmax(z_s' / T)), summed over
    classes and averaged over the batch. The student matches the teacher's logit *relations*, not their
    magnitude. Their CIFAR-100 setting is 0.1 CE + 9 KD at T = 2 ("base temperature"): the study's form at
    w = 0.9 with weight 10 and T = 2 is exactly that."""
    kl = F.kl_div(F.log_softmax(standardise(z_s) / temperature, 1), F.log_softmax(standardise(z_t) / temperature, 1),
                  reduction="batchmean", log_target=True)
    return {"kd": (weight * temperature ** 2, kl)}


@OBJECTIVES.register("nkd", args={"gamma": 1.5}, check=nonnegative_weights,
                     description="Normalised KD (Yang et al., ICCV 2023): the teacher's target-class probability "
                                 "weighting the student's log-probability of the label, plus gamma T² times the "
                                 "cross-entropy of the renormalised non-target distributions")
def nkd(z_s, z_t, y, temperature, gamma):
    """NKD, "From Knowledge Distillation to Self-Knowledge Distillation: A Unified Approach with Normalized
    Loss and Customized Soft Labels" (Yang et al., ICCV 2023), as in the authors' code (yzd-v/cls_KD,
    mmcls/models/dis_losses/nkd.py `NKDLoss`):

        target     = - mean_i t_i[y_i] log s_i[y_i]            (softmax at T = 1, t detached)
        non_target = - mean_i sum_{c != y_i} q_t[c] log q_s[c]  (softmax(z / T) over the non-target classes)
        NKD        = target + gamma T^2 non_target

    Both are cross-entropies, not divergences: NKD does not vanish when the student equals the teacher, but
    its gradient does. The authors add it to CE with weight 1 (gamma 1.5, T = 1 on ImageNet; they publish no
    CIFAR setting): the study's form at w = 0.5 is half of it. The target class is the label y, also in rcd."""
    target = F.one_hot(y, z_s.shape[1]).bool()
    p_t = F.softmax(z_t, 1)[target].detach()
    target_term = -(p_t * F.log_softmax(z_s, 1)[target]).mean()
    rest_s, rest_t = z_s[~target].view(len(z_s), -1), z_t[~target].view(len(z_t), -1)
    non_target = -(F.softmax(rest_t / temperature, 1) * F.log_softmax(rest_s / temperature, 1)).sum(1).mean()
    return {"target": (1.0, target_term), "non_target": (gamma * temperature ** 2, non_target)}
