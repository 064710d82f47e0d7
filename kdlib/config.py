"""Typed, validated configs for one setup and one run, and the run's config hash.

A `SetupConfig` is one experiment resolved at one scale (see `kdlib.setups`); `SetupConfig.run(arm, seed)`
gives the `RunConfig` of one arm at one seed index. A run's hash covers exactly the fields that change
its result, so a control run is shared by every alpha / temperature of the same setup, and a teacher by
every student of it.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

ARMS = ("teacher", "control", "kd", "rcd")
STUDENT_ARMS = ("control", "kd", "rcd")
KINDS = ("self", "standard")
RCD_NOISES = ("unit_fixed", "unit_resampled", "teacher_scaled", "permuted")
OPTIMIZERS = ("sgd", "adamw")

DEFAULT_TRAIN = {
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "sgd",
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "warmup_epochs": 0,
    "label_smoothing": 0.0,  # off: it would change the teacher's soft targets (see EXEMPLARS.md)
    "augment": False,
    "eval_batch_size": 1024,
}


class ConfigError(ValueError):
    """A config value is outside what is allowed; the message names the value and the allowed range."""


def _check_choice(what: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; allowed: {', '.join(map(str, allowed))}")


def check_alpha(alpha: Any) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ConfigError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= a <= 1.0:
        raise ConfigError(f"alpha must lie in [0, 1], got {alpha!r}")
    return a


def check_temperature(t: Any) -> float:
    try:
        v = float(t)
    except (TypeError, ValueError):
        raise ConfigError(f"temperature must be a number > 0, got {t!r}") from None
    if not v > 0.0 or v != v or v == float("inf"):
        raise ConfigError(f"temperature must be a finite number > 0, got {t!r}")
    return v


def check_n_seeds(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"the number of seeds must be an integer >= 1, got {n!r}")
    return n


def check_train(train: dict) -> dict:
    unknown = set(train) - set(DEFAULT_TRAIN)
    if unknown:
        raise ConfigError(f"unknown training option(s) {sorted(unknown)}; allowed: {sorted(DEFAULT_TRAIN)}")
    t = {**DEFAULT_TRAIN, **train}
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if isinstance(t[key], bool) or not isinstance(t[key], int) or t[key] < 1:
            raise ConfigError(f"train.{key} must be an integer >= 1, got {t[key]!r}")
    if not (isinstance(t["lr"], (int, float)) and t["lr"] > 0):
        raise ConfigError(f"train.lr must be a number > 0, got {t['lr']!r}")
    w = t["warmup_epochs"]
    if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < t["epochs"]:
        raise ConfigError(f"train.warmup_epochs must be an integer in [0, epochs = {t['epochs']}), got {w!r}")
    if not 0.0 <= float(t["label_smoothing"]) < 1.0:
        raise ConfigError(f"train.label_smoothing must lie in [0, 1), got {t['label_smoothing']!r}")
    _check_choice("optimizer", t["optimizer"], OPTIMIZERS)
    return t


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from any labelled parts: independent streams for init, data order and noise."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class ModelSpec:
    name: str
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one trained model. Fields that do not apply to the arm are None."""

    setup: str
    arm: str
    seed: int
    base_seed: int
    dataset: str
    data_args: dict
    model: ModelSpec
    train: dict
    init_seed: int
    order_seed: int
    teacher_hash: Optional[str] = None
    teacher_model: Optional[ModelSpec] = None
    alpha: Optional[float] = None
    temperature: Optional[float] = None
    variant: Optional[str] = None
    variant_args: Optional[dict] = None
    rcd_noise: Optional[str] = None
    noise_seed: Optional[int] = None
    backdoor: Optional[dict] = None  # teacher: trains poisoned; every arm: measured on triggered inputs

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["backdoor"] is None:  # keeps the hashes of runs without a backdoor as they were
            del d["backdoor"]
        return d

    @property
    def hash(self) -> str:
        # `setup` names the experiment but does not change the weights; it is kept so two setups that
        # happen to coincide still own separate, readable run folders.
        return hashlib.sha256(canonical_json(self.to_dict()).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        extra = f" {self.rcd_noise}" if self.arm == "rcd" else ""
        return f"{self.setup}/{self.arm}{extra}/seed{self.seed}"


@dataclass(frozen=True)
class SetupConfig:
    """One experimental setup, resolved at one scale with any user overrides applied."""

    name: str
    scale: str
    title: str
    modality: str
    kind: str
    dataset: str
    data_args: dict
    teacher: ModelSpec
    student: ModelSpec
    train: dict
    variant: str = "logit"
    variant_args: dict = field(default_factory=dict)
    alpha: float = 0.9
    temperature: float = 4.0
    rcd_noise: str = "unit_fixed"
    rcd_variants: tuple = ()
    n_seeds: int = 10
    base_seed: int = 0
    provenance: dict = field(default_factory=dict)
    description: str = ""
    backdoor: dict = field(default_factory=dict)  # e.g. {target: 0, poison_fraction: 0.1, patch: 3}

    def __post_init__(self) -> None:
        from . import backdoor, data, distill, models  # registries; imported late to keep config dependency-free

        _check_choice("setup kind", self.kind, KINDS)
        data.DATASETS.check(self.dataset)
        models.MODELS.check(self.teacher.name)
        models.MODELS.check(self.student.name)
        distill.VARIANTS.check(self.variant)
        _check_choice("RCD noise", self.rcd_noise, RCD_NOISES)
        for v in self.rcd_variants:
            _check_choice("RCD noise", v, RCD_NOISES)
        if self.kind == "self" and self.teacher != self.student:
            raise ConfigError(f"setup {self.name!r} is self-distillation but its student differs from its teacher")
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        object.__setattr__(self, "n_seeds", check_n_seeds(self.n_seeds))
        object.__setattr__(self, "train", check_train(dict(self.train)))
        object.__setattr__(self, "rcd_variants", tuple(self.rcd_variants))
        if self.backdoor:
            meta = data.DATASETS.meta(self.dataset)
            if meta["modality"] != "image":
                raise ConfigError(f"setup {self.name!r}: the backdoor trigger needs images, {self.dataset!r} is {meta['modality']}")
            object.__setattr__(self, "backdoor", backdoor.check_spec(dict(self.backdoor), meta["n_classes"]))

    def with_overrides(self, **overrides: Any) -> "SetupConfig":
        """A copy with parameters changed (alpha, temperature, n_seeds, epochs, ...), validated again."""
        train = dict(self.train)
        for key in list(overrides):
            if key in DEFAULT_TRAIN:
                train[key] = overrides.pop(key)
        allowed = {"alpha", "temperature", "n_seeds", "rcd_noise", "rcd_variants", "base_seed", "data_args",
                   "variant", "variant_args", "student_args", "backdoor"}
        unknown = set(overrides) - allowed
        if unknown:
            raise ConfigError(f"unknown override(s) {sorted(unknown)}; allowed: {sorted(allowed | set(DEFAULT_TRAIN))}")
        if "data_args" in overrides:
            overrides["data_args"] = {**self.data_args, **overrides["data_args"]}
        if "student_args" in overrides:  # e.g. a family of student sizes for scaling
            if self.kind == "self":
                raise ConfigError(f"setup {self.name!r} is self-distillation: its student is the teacher, "
                                  "so student_args cannot change it")
            overrides["student"] = ModelSpec(self.student.name, {**self.student.args, **overrides.pop("student_args")})
        return replace(self, train=train, **overrides)

    @property
    def noise_variants(self) -> tuple:
        """The RCD noises this setup runs: the main one first, then any side-by-side variants."""
        return (self.rcd_noise,) + tuple(v for v in self.rcd_variants if v != self.rcd_noise)

    def teacher_run(self, seed: int) -> RunConfig:
        return RunConfig(
            setup=self.name, arm="teacher", seed=seed, base_seed=self.base_seed,
            dataset=self.dataset, data_args=copy.deepcopy(self.data_args), model=self.teacher,
            train=dict(self.train),
            init_seed=derive_seed(self.base_seed, seed, "init", "teacher"),
            order_seed=derive_seed(self.base_seed, seed, "order", "teacher"),
            backdoor=dict(self.backdoor) or None,
        )

    def run(self, arm: str, seed: int, rcd_noise: Optional[str] = None) -> RunConfig:
        _check_choice("arm", arm, ARMS)
        if not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed index must be an integer >= 0, got {seed!r}")
        teacher = self.teacher_run(seed)
        if arm == "teacher":
            return teacher
        # Self-distillation: the students start from the teacher's own initial weights (the SIDDO control).
        init_seed = teacher.init_seed if self.kind == "self" else derive_seed(self.base_seed, seed, "init", "student")
        common = dict(
            setup=self.name, arm=arm, seed=seed, base_seed=self.base_seed, dataset=self.dataset,
            data_args=copy.deepcopy(self.data_args), model=self.student, train=dict(self.train),
            init_seed=init_seed,
            # one order for control, kd and rcd, different from the teacher's
            order_seed=derive_seed(self.base_seed, seed, "order", "student"),
            teacher_hash=teacher.hash, teacher_model=self.teacher, backdoor=dict(self.backdoor) or None,
        )
        if arm == "control":
            return RunConfig(**common)
        noise = rcd_noise or self.rcd_noise
        _check_choice("RCD noise", noise, RCD_NOISES)
        return RunConfig(
            **common, alpha=self.alpha, temperature=self.temperature, variant=self.variant,
            variant_args=copy.deepcopy(self.variant_args),
            rcd_noise=noise if arm == "rcd" else None,
            noise_seed=derive_seed(self.base_seed, seed, "noise") if arm == "rcd" else None,
        )

    def runs(self) -> list[RunConfig]:
        """All runs of the setup in dependency order (each seed's teacher before its students)."""
        out = []
        for s in range(self.n_seeds):
            out += [self.run("teacher", s), self.run("control", s), self.run("kd", s)]
            out += [self.run("rcd", s, rcd_noise=v) for v in self.noise_variants]
        return out

    def to_dict(self) -> dict:
        return asdict(self)
