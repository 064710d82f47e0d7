"""Typed, validated configs for one setup and one run, and the run's config hash.

A `SetupConfig` is one experiment resolved at one scale (see `kdlib.studyfile`);
`SetupConfig.run_config(arm, seed)` gives the `RunConfig` of one arm at one seed index. A run's hash
covers exactly the fields that change its result, so a control run is shared by every KD weight /
temperature of the same setup, and a teacher by every student of it.

This module depends on nothing else in kdlib: names (datasets, models, variants, KD objectives, RCD noises)
are checked against their registries where the study file is read (`kdlib.studyfile`), numbers here.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

ARMS = ("teacher", "control", "kd", "rcd")
KINDS = ("self", "standard")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "constant", "onecycle", "airbench")
PRECISIONS = ("fp32", "bf16")
# Every training option, with its type check. The values live in study.yaml (`defaults: train:`).
TRAIN_KEYS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule",
              "warmup_epochs", "label_smoothing", "augment", "eval_batch_size", "precision", "crop_pad", "lookahead",
              "norm_bias_lr_scale")
# RunConfig fields added after runs were stored, with the values that mean "as every earlier run": None (the arm
# has no such field) or the old behaviour (Hinton's KD, no arguments). The stored config and the hash leave
# them out then.
HASH_NEUTRAL = {"objective": (None, "hinton"), "objective_args": (None, {})}
# Training options added after runs were stored, with the value every earlier run trained with: left out of the
# stored config and the hash at that value, so a fp32 run keeps the hash it had before `precision` existed.
TRAIN_HASH_NEUTRAL = {"precision": "fp32", "crop_pad": 4, "lookahead": False, "norm_bias_lr_scale": 1.0}


class ConfigError(ValueError):
    """A config value is outside what is allowed; the message names the value and the allowed range."""


def check_choice(what: str, value: Any, allowed) -> Any:
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}; allowed: {', '.join(map(str, allowed))}")
    return value


def _number(what: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    return v


def check_kd_weight(w: Any, what: str = "kd_weight") -> float:
    """The weight of the KD term: loss = (1 - w) CE + w T^2 KL. It must lie in [0, 1]."""
    v = _number(f"{what} (the KD-term weight)", w)
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"{what} (the KD-term weight) must lie in [0, 1], got {w!r}")
    return v


def check_temperature(t: Any) -> float:
    v = _number("temperature", t)
    if not v > 0.0:
        raise ConfigError(f"temperature must be a finite number > 0, got {t!r}")
    return v


def check_n_seeds(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"the number of seeds must be an integer >= 1, got {n!r}")
    return n


def check_train(train: dict) -> dict:
    """A complete, type-checked training recipe (every key of TRAIN_KEYS, nothing else)."""
    unknown = set(train) - set(TRAIN_KEYS)
    if unknown:
        raise ConfigError(f"unknown training option(s) {sorted(unknown)}; allowed: {sorted(TRAIN_KEYS)}")
    # an option added later that a study file does not set means what it meant before the option existed
    train = {**{k: v for k, v in TRAIN_HASH_NEUTRAL.items() if k not in train}, **train}
    missing = set(TRAIN_KEYS) - set(train)
    if missing:
        raise ConfigError(f"training option(s) {sorted(missing)} have no value (set them under "
                          "`defaults: train:` in the study file)")
    t = dict(train)
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if isinstance(t[key], bool) or not isinstance(t[key], int) or t[key] < 1:
            raise ConfigError(f"train.{key} must be an integer >= 1, got {t[key]!r}")
    for key in ("lr", "momentum", "weight_decay", "label_smoothing", "norm_bias_lr_scale"):
        if isinstance(t[key], str):  # e.g. "3e-3" from YAML 1.1: the float, as if written 0.003 (same hash)
            t[key] = _number(f"train.{key}", t[key])
    if not _number("train.lr", t["lr"]) > 0:
        raise ConfigError(f"train.lr must be a number > 0, got {t['lr']!r}")
    if not 0.0 <= _number("train.momentum", t["momentum"]) < 1.0:
        raise ConfigError(f"train.momentum must lie in [0, 1), got {t['momentum']!r}")
    if _number("train.weight_decay", t["weight_decay"]) < 0:
        raise ConfigError(f"train.weight_decay must be >= 0, got {t['weight_decay']!r}")
    w = t["warmup_epochs"]
    if isinstance(w, bool) or not isinstance(w, int) or not 0 <= w < t["epochs"]:
        raise ConfigError(f"train.warmup_epochs must be an integer in [0, epochs = {t['epochs']}), got {w!r}")
    if not 0.0 <= _number("train.label_smoothing", t["label_smoothing"]) < 1.0:
        raise ConfigError(f"train.label_smoothing must lie in [0, 1), got {t['label_smoothing']!r}")
    if not _number("train.norm_bias_lr_scale", t["norm_bias_lr_scale"]) > 0:
        raise ConfigError(f"train.norm_bias_lr_scale must be a number > 0, got {t['norm_bias_lr_scale']!r}")
    cp = t["crop_pad"]
    if isinstance(cp, bool) or not isinstance(cp, int) or not 0 <= cp <= 16:
        raise ConfigError(f"train.crop_pad (the random crop's padding, pixels) must be an integer in [0, 16], got {cp!r}")
    for key in ("augment", "nesterov", "lookahead"):
        if not isinstance(t[key], bool):
            raise ConfigError(f"train.{key} must be true or false, got {t[key]!r}")
    check_choice("optimizer", t["optimizer"], OPTIMIZERS)
    check_choice("learning-rate schedule", t["schedule"], SCHEDULES)
    check_choice("train.precision", t["precision"], PRECISIONS)
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
    kd_weight: Optional[float] = None
    temperature: Optional[float] = None
    variant: Optional[str] = None
    variant_args: Optional[dict] = None
    rcd_noise: Optional[str] = None
    noise_seed: Optional[int] = None
    backdoor: Optional[dict] = None  # teacher: trains poisoned; every arm: measured on triggered inputs
    objective: Optional[str] = None  # kd, rcd: the KD objective (kdlib.objectives) and its arguments, defaults filled in
    objective_args: Optional[dict] = None

    def to_dict(self) -> dict:
        """The stored form of the config (config.json), which the hash covers. Fields added after runs were
        stored are left out while they hold what every earlier run had (HASH_NEUTRAL), so those runs keep
        their hashes: a Hinton kd run is the run it was before objectives had names."""
        d = asdict(self)
        for key, neutral in HASH_NEUTRAL.items():
            if d[key] in neutral:
                del d[key]
        for key, neutral in TRAIN_HASH_NEUTRAL.items():
            if d["train"].get(key) == neutral:
                del d["train"][key]
        return d

    @property
    def hash(self) -> str:
        # `setup` names the experiment but does not change the weights, so it is left out: two setups
        # whose teachers coincide (e.g. self and standard distillation from one teacher) share the runs.
        d = self.to_dict()
        del d["setup"]
        return hashlib.sha256(canonical_json(d).encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        extra = f" w{self.kd_weight:g}" if self.arm in ("kd", "rcd") else ""
        extra += f" {self.rcd_noise}" if self.arm == "rcd" else ""
        extra += f" {self.objective}" if self.objective not in HASH_NEUTRAL["objective"] else ""
        return f"{self.setup}/{self.arm}{extra}/seed{self.seed}"

    @property
    def is_student(self) -> bool:
        return self.arm != "teacher"


@dataclass(frozen=True)
class SetupConfig:
    """One experimental setup, resolved at one scale with any user overrides applied.

    `kd_weight` is the main reading of the paper's alpha (the weight of the KD term) and
    `kd_weight_variants` the other readings run beside it; `rcd_noise` / `rcd_variants` likewise for
    the RCD noise. kd and rcd students run for every (KD weight, noise) pair; teachers and controls
    are shared by all of them."""

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
    recipe: Optional[str] = None
    variant: str = "logit"
    variant_args: dict = field(default_factory=dict)
    objective: str = "hinton"  # the KD term of kd and rcd (kdlib.objectives); its arguments are filled in by the study file
    objective_args: dict = field(default_factory=dict)
    kd_weight: Optional[float] = None  # the main reading of alpha: the study file's `defaults: kd_weight`
    kd_weight_variants: tuple = ()
    temperature: float = 4.0
    rcd_noise: str = "unit_fixed"
    rcd_variants: tuple = ()
    n_seeds: int = 10
    base_seed: int = 0
    provenance: dict = field(default_factory=dict)
    description: str = ""
    backdoor: dict = field(default_factory=dict)  # e.g. {target: 0, poison_fraction: 0.1, patch: 3}
    primary: tuple = ()  # (metric, arm_a, arm_b) triples: the setup's primary test family
    equivalence_margin: float = 0.01  # claim 4: "rcd reaches kd" within this many accuracy (fraction)
    min_disagreements: int = 10  # fewer control-teacher disagreements than this: no headroom to judge (claims 1, 3)
    fitted_train_accuracy: float = 0.99  # a teacher below this train accuracy has not fitted its data (claims 2, 6)
    resources: dict = field(default_factory=dict)  # what one run asks of a scheduler (num_gpus, num_cpus)

    def __post_init__(self) -> None:
        check_choice("setup kind", self.kind, KINDS)
        if self.kind == "self" and self.teacher != self.student:
            raise ConfigError(f"setup {self.name!r} is self-distillation but its student differs from its teacher")
        if self.kd_weight is None:
            raise ConfigError(f"setup {self.name!r} has no kd_weight: the study file names the main reading of alpha "
                              "(`defaults: kd_weight`, or the setup's own)")
        object.__setattr__(self, "kd_weight", check_kd_weight(self.kd_weight))
        object.__setattr__(self, "kd_weight_variants",
                           tuple(check_kd_weight(w, "kd_weight_variants") for w in self.kd_weight_variants))
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        object.__setattr__(self, "n_seeds", check_n_seeds(self.n_seeds))
        if isinstance(self.base_seed, bool) or not isinstance(self.base_seed, int) or self.base_seed < 0:
            raise ConfigError(f"base_seed must be an integer >= 0, got {self.base_seed!r}")
        object.__setattr__(self, "train", check_train(dict(self.train)))
        object.__setattr__(self, "rcd_variants", tuple(self.rcd_variants))
        object.__setattr__(self, "primary", tuple(tuple(p) for p in self.primary))
        md = self.min_disagreements
        if isinstance(md, bool) or not isinstance(md, int) or md < 1:
            raise ConfigError(f"min_disagreements (test examples where the control disagrees with its teacher) must be "
                              f"an integer >= 1, got {md!r}")
        fitted = _number("fitted_train_accuracy", self.fitted_train_accuracy)
        if not 0.0 < fitted <= 1.0:
            raise ConfigError(f"fitted_train_accuracy (a training accuracy as a fraction) must lie in (0, 1], got {fitted!r}")
        object.__setattr__(self, "fitted_train_accuracy", fitted)
        margin = _number("equivalence_margin", self.equivalence_margin)
        object.__setattr__(self, "equivalence_margin", margin)
        if not 0.0 < margin < 1.0:
            raise ConfigError(f"equivalence_margin (an accuracy difference as a fraction) must lie in (0, 1), got {margin!r}")

    @property
    def noise_variants(self) -> tuple:
        """The RCD noises this setup runs: the main one first, then any side-by-side variants."""
        return (self.rcd_noise,) + tuple(v for v in self.rcd_variants if v != self.rcd_noise)

    @property
    def kd_weights(self) -> tuple:
        """The KD weights this setup runs: the main reading first, then the others."""
        return (self.kd_weight,) + tuple(w for w in dict.fromkeys(self.kd_weight_variants) if w != self.kd_weight)

    def teacher_run(self, seed: int) -> RunConfig:
        return RunConfig(
            setup=self.name, arm="teacher", seed=seed, base_seed=self.base_seed,
            dataset=self.dataset, data_args=copy.deepcopy(self.data_args), model=self.teacher,
            train=dict(self.train),
            init_seed=derive_seed(self.base_seed, seed, "init", "teacher"),
            order_seed=derive_seed(self.base_seed, seed, "order", "teacher"),
            backdoor=dict(self.backdoor) or None,
        )

    def run_config(self, arm: str, seed: int, rcd_noise: Optional[str] = None,
                   kd_weight: Optional[float] = None) -> RunConfig:
        """The config of one arm at one seed index (kd / rcd at the main KD weight and noise unless given)."""
        check_choice("arm", arm, ARMS)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
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
        return RunConfig(
            **common, kd_weight=self.kd_weight if kd_weight is None else check_kd_weight(kd_weight),
            temperature=self.temperature, variant=self.variant, variant_args=copy.deepcopy(self.variant_args),
            rcd_noise=(rcd_noise or self.rcd_noise) if arm == "rcd" else None,
            noise_seed=derive_seed(self.base_seed, seed, "noise") if arm == "rcd" else None,
            objective=self.objective, objective_args=copy.deepcopy(self.objective_args),
        )

    def runs(self) -> list[RunConfig]:
        """All runs of the setup in dependency order (each seed's teacher before its students)."""
        out = []
        for s in range(self.n_seeds):
            out += [self.run_config("teacher", s), self.run_config("control", s)]
            for w in self.kd_weights:
                out.append(self.run_config("kd", s, kd_weight=w))
                out += [self.run_config("rcd", s, rcd_noise=v, kd_weight=w) for v in self.noise_variants]
        return out

    def with_changes(self, **changes: Any) -> "SetupConfig":
        """A copy with fields replaced, validated again (see `kdlib.studyfile` for user overrides)."""
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)
