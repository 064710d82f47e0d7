"""The losses of the four arms: CE, logit KD, random-control (RCD) targets, and feature-matching variants.

KD loss (PROTOCOL.md):  (1 - alpha) * CE(z_s, y) + alpha * T^2 * KL(softmax(z_t / T) || softmax(z_s / T)).
RCD uses exactly this loss with z_t replaced by noise that carries no information about the input.
Feature variants add `beta * feature_loss` on intermediate activations picked by module name with
forward hooks (no model surgery).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import RCD_NOISES, ConfigError, check_alpha, check_temperature
from .registry import Registry

VARIANTS = Registry("distillation variant")


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            alpha: float, temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """(1 - alpha) CE + alpha T^2 KL(p_t^T || p_s^T), KL averaged over the batch. alpha = 0 is exactly CE."""
    alpha, temperature = check_alpha(alpha), check_temperature(temperature)
    ce = F.cross_entropy(student_logits, labels, label_smoothing=label_smoothing)
    kl = F.kl_div(F.log_softmax(student_logits / temperature, 1), F.log_softmax(teacher_logits / temperature, 1),
                  reduction="batchmean", log_target=True)
    return (1.0 - alpha) * ce + alpha * temperature ** 2 * kl


class RCDTargets:
    """Noise logits for random control distillation, indexed by training-example index.

    unit_fixed      per-example N(0, 1) logits drawn once for the run (the reconstructed default)
    unit_resampled  fresh N(0, 1) logits at every step
    teacher_scaled  per-example fixed Gaussian logits with the teacher's train-logit standard deviation
    permuted        each example's teacher logits under a random class permutation, fixed for the run
                    (keeps the teacher's confidence profile, removes which class it points to)
    """

    def __init__(self, kind: str, n_examples: int, n_classes: int, seed: int,
                 teacher_logits: Optional[torch.Tensor] = None):
        if kind not in RCD_NOISES:
            raise ConfigError(f"unknown RCD noise {kind!r}; allowed: {', '.join(RCD_NOISES)}")
        if kind in ("teacher_scaled", "permuted") and teacher_logits is None:
            raise ConfigError(f"RCD noise {kind!r} needs the teacher's training logits")
        self.kind, self.n_classes = kind, n_classes
        self.gen = torch.Generator().manual_seed(seed)
        self.fixed: Optional[torch.Tensor] = None
        if kind == "unit_fixed":
            self.fixed = torch.randn(n_examples, n_classes, generator=self.gen)
        elif kind == "teacher_scaled":
            self.fixed = torch.randn(n_examples, n_classes, generator=self.gen) * teacher_logits.float().std()
        elif kind == "permuted":
            perm = torch.rand(n_examples, n_classes, generator=self.gen).argsort(1)
            self.fixed = teacher_logits.float().cpu().gather(1, perm)

    def to(self, device) -> "RCDTargets":
        if self.fixed is not None:
            self.fixed = self.fixed.to(device)
        return self

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        if self.fixed is not None:
            return self.fixed[idx]
        return torch.randn(len(idx), self.n_classes, generator=self.gen).to(idx.device)


class FeatureHook:
    """Keeps the latest output of the module at `name` (a dotted path from `model.named_modules()`)."""

    def __init__(self, model: nn.Module, name: str):
        modules = dict(model.named_modules())
        if name not in modules:
            top = [n for n in modules if n and "." not in n]
            raise ConfigError(f"no module named {name!r} in {type(model).__name__}; top-level modules: {top}")
        self.output: Optional[torch.Tensor] = None
        self.handle = modules[name].register_forward_hook(self._keep)

    def _keep(self, _module, _inputs, output):
        self.output = output

    def remove(self) -> None:
        self.handle.remove()


# ---------------------------------------------------------------------------------------- variants
class LogitKD:
    """Hinton logit matching. The teacher enters only through its logits, so they can be cached."""

    needs_teacher_model = False

    def __init__(self, **args):
        if args:
            raise ConfigError(f"logit KD takes no variant arguments, got {sorted(args)}")

    def attach(self, student: nn.Module, teacher: Optional[nn.Module], example: torch.Tensor) -> list:
        return []

    def feature_loss(self, rcd_noise_gen: Optional[torch.Generator] = None) -> torch.Tensor | float:
        return 0.0

    def detach(self) -> None:
        pass


class _FeatureKD(LogitKD):
    """Logit KD plus beta * a loss between a student and a teacher feature map (picked by module name)."""

    needs_teacher_model = True

    def __init__(self, student_layer: str, teacher_layer: str, beta: float = 1.0):
        if not beta >= 0:
            raise ConfigError(f"feature-loss weight beta must be >= 0, got {beta!r}")
        self.student_layer, self.teacher_layer, self.beta = student_layer, teacher_layer, float(beta)
        self.hooks: list[FeatureHook] = []
        self.random_features = False  # RCD: the teacher's features are replaced by noise too

    def attach(self, student, teacher, example):
        self.hooks = [FeatureHook(student, self.student_layer), FeatureHook(teacher, self.teacher_layer)]
        with torch.no_grad():
            student.eval(), teacher.eval()
            student(example), teacher(example)
            student.train()
        fs, ft = self.hooks[0].output, self.hooks[1].output
        self.teacher_feature_std = float(ft.float().std())
        return self._make_params(fs, ft)

    def _make_params(self, fs, ft) -> list:
        return []

    def teacher_feature(self, gen: Optional[torch.Generator]) -> torch.Tensor:
        ft = self.hooks[1].output.detach()
        if gen is None:
            return ft
        return (torch.randn(ft.shape, generator=gen) * self.teacher_feature_std).to(ft.device, ft.dtype)

    def detach(self):
        for h in self.hooks:
            h.remove()


@VARIANTS.register("logit", description="logit matching (Hinton et al., 2015)")
def _logit(**args):
    return LogitKD(**args)


class FitNets(_FeatureKD):
    """FitNets hints (Romero et al., 2015): a learned 1x1 regressor maps student to teacher features; MSE."""

    def _make_params(self, fs, ft):
        if fs.shape[2:] != ft.shape[2:]:
            raise ConfigError(f"fitnets: student feature {tuple(fs.shape[1:])} and teacher feature "
                              f"{tuple(ft.shape[1:])} differ in spatial size; pick matching layers")
        conv = nn.Conv2d if fs.dim() == 4 else nn.Conv1d if fs.dim() == 3 else None
        self.regressor = conv(fs.shape[1], ft.shape[1], 1) if conv else nn.Linear(fs.shape[1], ft.shape[1])
        self.regressor.to(fs.device)
        return list(self.regressor.parameters())

    def feature_loss(self, rcd_noise_gen=None):
        fs = self.regressor(self.hooks[0].output)
        return self.beta * F.mse_loss(fs, self.teacher_feature(rcd_noise_gen).to(fs.dtype))


@VARIANTS.register("fitnets", description="FitNets hints with a learned regressor (Romero et al., 2015)")
def _fitnets(**args):
    return FitNets(**args)


def attention_map(f: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis (2017): L2-normalised spatial map of the channel mean of squared activations."""
    return F.normalize(f.float().pow(2).mean(1).flatten(1), dim=1)


class AttentionTransfer(_FeatureKD):
    def feature_loss(self, rcd_noise_gen=None):
        fs, ft = self.hooks[0].output, self.teacher_feature(rcd_noise_gen)
        if fs.shape[2:] != ft.shape[2:]:
            raise ConfigError(f"attention transfer: feature maps {tuple(fs.shape[2:])} and {tuple(ft.shape[2:])} differ")
        return self.beta * (attention_map(fs) - attention_map(ft)).pow(2).mean()


@VARIANTS.register("attention", description="attention transfer (Zagoruyko & Komodakis, 2017)")
def _attention(**args):
    return AttentionTransfer(**args)


def make_variant(name: str, args: Optional[dict] = None):
    try:
        return VARIANTS.get(name)(**(args or {}))
    except TypeError as e:
        raise ConfigError(f"bad arguments {args} for distillation variant {name!r}: {e}") from e
