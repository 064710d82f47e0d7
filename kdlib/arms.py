"""The arms of a setup as objects: what each one minimises and what it needs from the teacher.

    teacher, control   CE(z_s, y)
    kd                 (1 - w) CE(z_s, y) + w T^2 KL(softmax(z_t / T) || softmax(z_s / T))   [+ feature term]
    rcd                the kd loss with z_t replaced by noise that carries no information about the input

`w` is the weight of the KD term (`kd_weight`; the paper's "alpha" under one of its two readings, see
book/methods.md). The KD term is the setup's objective (`kdlib.objectives`: Hinton's above by default, or
e.g. Decoupled KD), and rcd's noise one of `kdlib.noises`. Feature variants add `beta * feature_loss`
between an intermediate student and teacher feature map picked by module name with forward hooks (no
model surgery); in rcd the teacher's feature map is replaced by noise too, following `rcd_noise` (fixed
per example, or resampled every step) at the teacher's feature scale estimated on FEATURE_SCALE_EXAMPLES
training examples. Every arm's `loss()` returns the total and its named terms (ce, the objective's terms
such as kd, feature), which the trainer logs per epoch. `needs_teacher_model` / `needs_teacher_logits`
say, in one place, what a run must be given from its teacher.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ConfigError, RunConfig, derive_seed
from .noises import NOISES, feature_map_noises
from .objectives import DEFAULT as DEFAULT_OBJECTIVE
from .objectives import check_objective, kd_terms
from .registry import Registry

VARIANTS = Registry("distillation variant")
# RCD in a feature variant: the teacher's feature map becomes Gaussian noise with the teacher's feature
# standard deviation, estimated on the first this-many training examples (train.py passes them to `bind`).
FEATURE_SCALE_EXAMPLES = 256


@dataclass
class Batch:
    x: torch.Tensor    # the inputs the student sees (augmented where augmentation is on)
    y: torch.Tensor
    idx: torch.Tensor  # positions in the training set (indexes cached teacher logits and fixed noise)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
            kd_weight: float, temperature: float, label_smoothing: float = 0.0,
            objective: str = DEFAULT_OBJECTIVE, objective_args: Optional[dict] = None) -> torch.Tensor:
    """(1 - w) CE + w * the objective's KD term (Hinton's: T^2 KL(p_t^T || p_s^T), KL averaged over the
    batch). w = 0 is exactly CE."""
    return kd_terms(student_logits, teacher_logits, labels, kd_weight, temperature, label_smoothing, objective,
                    check_objective(objective, objective_args))[0]


# ------------------------------------------------------------------------------------------ targets
class TeacherLogits:
    """The teacher's logits on the (un-augmented) training set, computed once by the teacher run."""

    needs_model, needs_logits = False, True

    def bind(self, teacher_model, teacher_logits, device) -> None:
        self.logits = teacher_logits.float().to(device)

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.logits[batch.idx]


class LiveTeacher:
    """The teacher model run on each batch: needed when inputs are augmented or features are matched."""

    needs_model, needs_logits = True, False

    def bind(self, teacher_model, teacher_logits, device) -> None:
        self.model = teacher_model.to(device).eval()

    def __call__(self, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            return self.model(batch.x).float()


class RCDNoise:
    """Noise logits for random control distillation, indexed by training-example index: the registered
    noise `kind` (`kdlib.noises`), drawn once for the run or afresh at every step as its metadata says."""

    needs_model = False

    def __init__(self, kind: str, n_examples: int, n_classes: int, seed: int):
        self.kind, self.n_examples, self.n_classes, self.seed = kind, n_examples, n_classes, seed
        self.draw, meta = NOISES.get(kind), NOISES.meta(kind)
        self.needs_logits, self.resampled = meta["needs_teacher_logits"], meta["resampled"]

    def bind(self, teacher_model, teacher_logits, device) -> None:
        if self.needs_logits and teacher_logits is None:
            raise ConfigError(f"RCD noise {self.kind!r} needs the teacher's training logits")
        self.gen = torch.Generator().manual_seed(self.seed)
        self.teacher_logits = teacher_logits
        self.fixed: Optional[torch.Tensor] = None
        if not self.resampled:
            self.fixed = self.draw(self.gen, self.n_examples, self.n_classes, teacher_logits).to(device)

    def __call__(self, batch: Batch) -> torch.Tensor:
        if self.fixed is not None:
            return self.fixed[batch.idx]
        return self.draw(self.gen, len(batch.idx), self.n_classes, self.teacher_logits).to(batch.idx.device)


# ------------------------------------------------------------------------------------- feature terms
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


class FeatureMatch:
    """beta * a loss between a student and a teacher feature map (picked by module name)."""

    name = "feature"

    def __init__(self, student_layer: str, teacher_layer: str, beta: float = 1.0):
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ConfigError(f"feature-loss weight beta must be a number >= 0, got {beta!r}")
        self.student_layer, self.teacher_layer, self.beta = student_layer, teacher_layer, float(beta)
        self.hooks: list[FeatureHook] = []
        self.noise: Optional[torch.Generator] = None  # rcd, resampled: the teacher's feature map is fresh noise
        self.fixed_noise: Optional[torch.Tensor] = None  # rcd, fixed: one noise map per training example

    def attach(self, student: nn.Module, teacher: nn.Module, example: torch.Tensor, init_seed: int,
               noise_seed: Optional[int] = None, noise: str = "unit_fixed", n_examples: Optional[int] = None) -> list:
        """Hook both models, read the feature shapes on `example` (training examples: the teacher's feature
        scale is their standard deviation), build any learned parts (seeded by the run, so a run does not
        depend on what ran before it in the process). With `noise_seed` (rcd) the teacher's feature map is
        replaced by noise following the RCD noise `noise` (its `feature_map` form in `kdlib.noises`: a unit
        scale means nothing for a feature map, so every noise uses the teacher's feature scale); fixed noise is
        drawn for `n_examples` training examples, indexed like the training set (n_examples x the feature
        shape floats, on the CPU)."""
        resampled = False
        if noise_seed is not None:
            if noise not in feature_map_noises():
                raise ConfigError(f"RCD noise {noise!r} has no feature-map form; allowed with a feature variant: "
                                  f"{', '.join(feature_map_noises())}")
            resampled = NOISES.meta(noise)["resampled"]
            if not resampled and not (isinstance(n_examples, int) and n_examples >= 1):
                raise ConfigError(f"fixed feature noise needs the number of training examples, got {n_examples!r}")
        self.hooks = [FeatureHook(student, self.student_layer), FeatureHook(teacher, self.teacher_layer)]
        with torch.no_grad():
            student.eval(), teacher.eval()
            student(example), teacher(example)
            student.train()
        fs, ft = self.hooks[0].output, self.hooks[1].output
        self.teacher_feature_shape = tuple(ft.shape[1:])
        self.teacher_feature_std = float(ft.float().std())
        if noise_seed is not None:
            gen = torch.Generator().manual_seed(derive_seed(noise_seed, "features"))
            if not resampled:
                self.fixed_noise = torch.randn((n_examples,) + self.teacher_feature_shape, generator=gen) \
                    * self.teacher_feature_std
            else:
                self.noise = gen
            self.hooks.pop().remove()  # the teacher is not run during training: its features are noise
        self.check_shapes(fs, ft)
        # kd and rcd of a seed start from the same learned parts, drawn from the run's init stream
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(init_seed, "feature-regressor"))
            return self.make_params(fs, ft)

    def check_shapes(self, fs, ft) -> None:
        pass

    def make_params(self, fs, ft) -> list:
        return []

    def student_feature(self) -> torch.Tensor:
        return self.hooks[0].output

    def teacher_feature(self, idx: torch.Tensor) -> torch.Tensor:
        """The teacher's feature map of the batch with training-set positions `idx` (kd), or its noise (rcd)."""
        fs = self.student_feature()
        if self.fixed_noise is not None:
            return self.fixed_noise[idx.cpu()].to(fs.device, fs.dtype)
        if self.noise is None:
            return self.hooks[1].output.detach()
        return (torch.randn((len(idx),) + self.teacher_feature_shape, generator=self.noise)
                * self.teacher_feature_std).to(fs.device, fs.dtype)

    def loss(self, idx: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def detach(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []


class FitNets(FeatureMatch):
    """FitNets hints (Romero et al., 2015): a learned 1x1 regressor maps student to teacher features; MSE."""

    def check_shapes(self, fs, ft):
        if fs.shape[2:] != ft.shape[2:]:
            raise ConfigError(f"fitnets: student feature {tuple(fs.shape[1:])} and teacher feature "
                              f"{tuple(ft.shape[1:])} differ in spatial size; pick matching layers")

    def make_params(self, fs, ft):
        conv = nn.Conv2d if fs.dim() == 4 else nn.Conv1d if fs.dim() == 3 else None
        self.regressor = conv(fs.shape[1], ft.shape[1], 1) if conv else nn.Linear(fs.shape[1], ft.shape[1])
        self.regressor.to(fs.device)
        return list(self.regressor.parameters())

    def loss(self, idx):
        fs = self.regressor(self.student_feature())
        return self.beta * F.mse_loss(fs, self.teacher_feature(idx).to(fs.dtype))


def attention_map(f: torch.Tensor) -> torch.Tensor:
    """Zagoruyko & Komodakis (2017): L2-normalised spatial map of the channel mean of squared activations."""
    return F.normalize(f.float().pow(2).mean(1).flatten(1), dim=1)


class AttentionTransfer(FeatureMatch):
    def check_shapes(self, fs, ft):
        if fs.shape[2:] != ft.shape[2:]:
            raise ConfigError(f"attention transfer: feature maps {tuple(fs.shape[2:])} and {tuple(ft.shape[2:])} differ")

    def loss(self, idx):
        return self.beta * (attention_map(self.student_feature()) - attention_map(self.teacher_feature(idx))).pow(2).mean()


def _no_feature(**args):
    if args:
        raise ConfigError(f"logit KD takes no variant arguments, got {sorted(args)}")
    return None


VARIANTS.register("logit", description="logit matching (Hinton et al., 2015)")(_no_feature)
VARIANTS.register("fitnets", description="FitNets hints with a learned regressor (Romero et al., 2015)")(FitNets)
VARIANTS.register("attention", description="attention transfer (Zagoruyko & Komodakis, 2017)")(AttentionTransfer)


def make_feature_match(name: str, args: Optional[dict] = None) -> Optional[FeatureMatch]:
    """The feature term of a variant (None for plain logit matching); bad arguments fail naming them."""
    try:
        return VARIANTS.get(name)(**(args or {}))
    except TypeError as e:
        raise ConfigError(f"bad arguments {args} for distillation variant {name!r}: {e}") from e


# --------------------------------------------------------------------------------------------- arms
class CrossEntropyArm:
    """teacher and control: cross-entropy on the labels only."""

    needs_teacher_model = needs_teacher_logits = False

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def bind(self, student, example, teacher_model=None, teacher_logits=None, device="cpu") -> list:
        return []

    def loss(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        ce = F.cross_entropy(logits.float(), batch.y, label_smoothing=self.label_smoothing)
        return ce, {"ce": ce}

    def close(self) -> None:
        pass


class DistillationArm:
    """kd and rcd: the KD loss towards `targets` (the teacher's logits, or noise) under the KD objective
    `objective` (`kdlib.objectives`), plus a feature term."""

    def __init__(self, kd_weight: float, temperature: float, targets, feature: Optional[FeatureMatch] = None,
                 label_smoothing: float = 0.0, init_seed: int = 0, noise_seed: Optional[int] = None,
                 noise: str = "unit_fixed", n_train: Optional[int] = None, objective: str = DEFAULT_OBJECTIVE,
                 objective_args: Optional[dict] = None):
        self.w, self.temperature, self.targets, self.feature = kd_weight, temperature, targets, feature
        self.label_smoothing, self.init_seed, self.noise_seed = label_smoothing, init_seed, noise_seed
        self.noise, self.n_train = noise, n_train
        self.objective, self.objective_args = objective, check_objective(objective, objective_args)
        self.needs_teacher_model = targets.needs_model or feature is not None
        self.needs_teacher_logits = targets.needs_logits

    def bind(self, student, example, teacher_model=None, teacher_logits=None, device="cpu") -> list:
        if self.needs_teacher_model and teacher_model is None:
            raise ValueError("this run needs the teacher model (feature variant or augmented inputs)")
        if self.needs_teacher_logits and teacher_logits is None:
            raise ValueError("this run needs the teacher's training logits")
        self.targets.bind(teacher_model, teacher_logits, device)
        if self.feature is None:
            return []
        if teacher_model is not None:
            teacher_model.to(device)
        return self.feature.attach(student, teacher_model, example, self.init_seed, self.noise_seed,
                                   noise=self.noise, n_examples=self.n_train)

    def loss(self, logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, dict]:
        total, terms = kd_terms(logits.float(), self.targets(batch), batch.y, self.w, self.temperature,
                                self.label_smoothing, self.objective, self.objective_args)
        if self.feature is not None:
            terms["feature"] = self.feature.loss(batch.idx)
            total = total + terms["feature"]
        return total, terms

    def close(self) -> None:
        if self.feature is not None:
            self.feature.detach()


def build_arm(cfg: RunConfig, n_train: int, n_classes: int):
    """The arm object of a run. What it needs from the teacher is known before anything is loaded."""
    ls = cfg.train["label_smoothing"]
    if cfg.arm in ("teacher", "control"):
        return CrossEntropyArm(ls)
    feature = make_feature_match(cfg.variant, cfg.variant_args)
    if cfg.arm == "kd":
        live = feature is not None or cfg.train["augment"]
        targets = LiveTeacher() if live else TeacherLogits()
    else:
        targets = RCDNoise(cfg.rcd_noise, n_train, n_classes, cfg.noise_seed)
    return DistillationArm(cfg.kd_weight, cfg.temperature, targets, feature, ls, init_seed=cfg.init_seed,
                           noise_seed=cfg.noise_seed if cfg.arm == "rcd" else None,
                           noise=cfg.rcd_noise or "unit_fixed", n_train=n_train, objective=cfg.objective,
                           objective_args=cfg.objective_args)
