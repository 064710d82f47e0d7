"""The study file (study.yaml): protocol defaults, training recipes, scales, the registry of setups, and
the plan of what runs where.

A setup entry holds its base fields plus per-scale overrides under `scales:`. Resolution order:
protocol defaults -> the setup's base fields -> its `scales[<scale>]` entry -> the caller's overrides.
The training recipe is built the same way, starting from `defaults: train:`, then the named recipe the
setup offers (`recipes:`, chosen with the `recipe` parameter), then the setup's and the scale's `train:`.
Names (datasets, models, variants, KD objectives and their arguments, RCD noises) are checked against their
registries here, so a typo fails when the study file is read, naming the file and the setup.
"""
from __future__ import annotations

import re

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from . import yamlread
from .config import TRAIN_KEYS, ConfigError, ModelSpec, SetupConfig, check_choice
from .paths import REPO_ROOT

DEFAULT_STUDY = REPO_ROOT / "study.yaml"
SETUP_FIELDS = {"title", "modality", "kind", "dataset", "data_args", "teacher", "student", "train", "variant",
                "variant_args", "objective", "objective_args", "kd_weight", "kd_weight_variants", "temperature",
                "rcd_noise", "rcd_variants", "n_seeds", "base_seed", "provenance", "description", "scales", "backdoor",
                "recipes", "primary", "equivalence_margin", "min_disagreements", "fitted_train_accuracy", "resources"}
SCALE_FIELDS = {"n_seeds", "title", "label", "description", "plan", "pending", "results", "include_shipped", "shipped",
                "device"}
# What a caller (a plan entry, a papermill parameter) may change; `alpha` is accepted as the KD weight.
OVERRIDES = {"kd_weight", "alpha", "kd_weight_variants", "temperature", "n_seeds", "rcd_noise", "rcd_variants",
             "base_seed", "data_args", "variant", "variant_args", "objective", "objective_args", "student_args",
             "backdoor", "recipe"} | set(TRAIN_KEYS)
PLAN_KEYS = {"id", "setup", "params", "title"}
TOP_KEYS = {"defaults", "recipes", "scales", "setups", "book"}
BOOK_PARTS = ("results", "running")  # the book's own chapters after the setup chapters, part by part
DEVICE_PATTERN = "auto, cpu, cuda or cuda:N"
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a plan id names its chapter's file
# upper bounds a run of the study keeps to (study.yaml `defaults: limits:` may change them)
LIMITS = {"n_seeds": 100, "workers": 64}


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


@dataclass
class PlanEntry:
    """One chapter of the study: a setup at a scale with a parameter set."""

    id: str
    setup: str
    params: dict = field(default_factory=dict)
    title: Optional[str] = None


def normalise_overrides(overrides: dict) -> dict:
    """Accept `alpha` as the KD-term weight (documented in book/methods.md), refuse unknown names."""
    out = dict(overrides)
    unknown = set(out) - OVERRIDES
    if unknown:
        raise ConfigError(f"unknown parameter(s) {sorted(unknown)}; allowed: {sorted(OVERRIDES)}")
    if "alpha" in out:
        if "kd_weight" in out and out["kd_weight"] != out["alpha"]:
            raise ConfigError(f"alpha ({out['alpha']!r}) and kd_weight ({out['kd_weight']!r}) name the same "
                              "parameter (the weight of the KD term) but differ; give one")
        out["kd_weight"] = out.pop("alpha")
    return out


class Study:
    """The parsed study file. Construction checks its shape; `setup()` resolves and validates one setup."""

    def __init__(self, raw: dict, path: Optional[Path] = None):
        self.path = path
        where = self._where()
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping with defaults, scales and setups at the top")
        unknown = set(raw) - TOP_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown top-level key(s) {sorted(map(str, unknown))}; allowed: {sorted(TOP_KEYS)}")
        self.raw = raw
        self.defaults = raw.get("defaults") or {}
        self.recipes = raw.get("recipes") or {}
        self.scales = raw.get("scales") or {}
        self.setup_specs = raw.get("setups") or {}
        self.book = self._check_book(raw.get("book") or {})
        unknown = set(self.defaults) - (SETUP_FIELDS - {"scales", "recipes", "title", "dataset", "kind", "teacher",
                                                         "student", "modality"}) - {"recipe", "limits"}
        if unknown:
            raise ConfigError(f"{where}: `defaults:` has unknown key(s) {sorted(unknown)}")
        self.limits = self._check_limits(self.defaults.get("limits") or {})
        for name, spec in self.scales.items():
            unknown = set(spec or {}) - SCALE_FIELDS
            if unknown:
                raise ConfigError(f"{where}: scale {name!r} has unknown key(s) {sorted(unknown)}; allowed: {sorted(SCALE_FIELDS)}")
            device = (spec or {}).get("device")
            if device is not None and not is_device_name(device):
                raise ConfigError(f"{where}: scale {name!r} has device {device!r}; allowed: {DEVICE_PATTERN}")
        for name, spec in self.setup_specs.items():
            if not isinstance(spec, dict):
                raise ConfigError(f"{where}: setup {name!r} must be a mapping of fields, got {spec!r}")
            unknown = set(spec) - SETUP_FIELDS
            if unknown:
                raise ConfigError(f"{where}: setup {name!r} has unknown field(s) {sorted(unknown)}; allowed: {sorted(SETUP_FIELDS)}")
            for key in ("dataset", "teacher", "kind"):
                if key not in spec:
                    raise ConfigError(f"{where}: setup {name!r} has no `{key}:` (every setup needs dataset, kind and teacher)")
            for recipe in (spec.get("recipes") or {}).values():
                if recipe not in self.recipes:
                    raise ConfigError(f"{where}: setup {name!r} names recipe {recipe!r}, which is not under "
                                      f"`recipes:`; there are: {', '.join(self.recipes)}")

    def _check_book(self, book: dict) -> dict:
        """`book:` names the chapters after the setup chapters, per part: `{chapter: <notebooks/NAME.py>, title}`."""
        where = self._where()
        if not isinstance(book, dict) or set(book) - set(BOOK_PARTS):
            raise ConfigError(f"{where}: `book:` must map parts {list(BOOK_PARTS)} to lists of chapters, got {book!r}")
        for part, chapters in book.items():
            for ch in chapters or []:
                if not isinstance(ch, dict) or set(ch) != {"chapter", "title"}:
                    raise ConfigError(f"{where}: book part {part!r}: each chapter is {{chapter: NAME, title: TEXT}}, got {ch!r}")
                if not (REPO_ROOT / "notebooks" / f"{ch['chapter']}.py").is_file():
                    raise ConfigError(f"{where}: book part {part!r} names chapter {ch['chapter']!r}, but there is no "
                                      f"notebooks/{ch['chapter']}.py")
        return book

    def book_chapters(self, part: str) -> list[tuple[str, str]]:
        """(notebook name, title) of the book's own chapters in one part (study.yaml `book:`), in order."""
        if part not in BOOK_PARTS:
            raise ConfigError(f"unknown book part {part!r}; allowed: {', '.join(BOOK_PARTS)}")
        return [(c["chapter"], c["title"]) for c in self.book.get(part) or []]

    def _where(self) -> str:
        return f"study file {self.path}" if self.path else "study file"

    # -------------------------------------------------------------------------------- scales
    def check_scale(self, scale: str) -> str:
        if scale not in self.scales:
            raise ConfigError(f"unknown scale {scale!r}; {self._where()} has: {', '.join(self.scales)}")
        return scale

    def scale_info(self, scale: str) -> dict:
        return dict(self.scales[self.check_scale(scale)] or {})

    def scale_title(self, scale: str) -> str:
        """The book part's title of a scale's chapters (study.yaml `title:`)."""
        return self.scale_info(scale).get("title", scale)

    def scale_label(self, scale: str) -> str:
        """How tables and claim columns name a scale's body of evidence (study.yaml `label:`)."""
        return self.scale_info(scale).get("label", scale)

    def results_dir(self, scale: str) -> str:
        """The run store folder of a scale, relative to the repository root unless absolute."""
        return self.scale_info(scale).get("results", f"results/{scale}")

    def shipped_scales(self, scale: str) -> list[str]:
        """Scales whose committed runs the book of `scale` shows without training them."""
        out = list(self.scale_info(scale).get("include_shipped", []))
        for s in out:
            self.check_scale(s)
        return out

    # -------------------------------------------------------------------------------- setups
    def names(self, scale: Optional[str] = None) -> list[str]:
        return [n for n, spec in self.setup_specs.items()
                if scale is None or scale in (spec.get("scales") or {})]

    def spec(self, name: str) -> dict:
        if name not in self.setup_specs:
            raise ConfigError(f"unknown setup {name!r}; allowed: {', '.join(sorted(self.setup_specs))}")
        return copy.deepcopy(self.setup_specs[name])

    def setup(self, name: str, scale: str = "cpu", **overrides: Any) -> SetupConfig:
        """One setup resolved at a scale with the caller's overrides, every value validated."""
        self.check_scale(scale)
        spec = self.spec(name)
        overrides = normalise_overrides(overrides)
        scales = spec.pop("scales", None) or {}
        if scale not in scales:
            raise ConfigError(f"setup {name!r} has no {scale!r} scale; it has: {', '.join(scales) or 'none'}")
        merged = deep_merge(spec, scales[scale] or {})
        fields = {k: copy.deepcopy(v) for k, v in self.defaults.items() if k not in ("train", "recipe", "limits")}
        fields["n_seeds"] = self.scales[scale].get("n_seeds", fields.get("n_seeds", 10))
        fields.update({k: v for k, v in merged.items() if k not in ("train", "recipes", "teacher", "student")})

        recipes = merged.get("recipes") or {}
        recipe = overrides.pop("recipe", None)
        if recipes:
            recipe = recipe or self.defaults.get("recipe")
            check_choice(f"recipe for setup {name!r}", recipe, list(recipes))
            recipe_train = self.recipes[recipes[recipe]]
        elif recipe is not None:
            raise ConfigError(f"setup {name!r} offers no recipes, so `recipe: {recipe}` cannot apply")
        else:
            recipe_train = {}
        train = deep_merge(deep_merge(self.defaults.get("train", {}), recipe_train), merged.get("train") or {})
        for key in TRAIN_KEYS:
            if key in overrides:
                train[key] = overrides.pop(key)

        teacher = _model_spec(merged["teacher"], name, "teacher")
        student = teacher if merged.get("kind") == "self" or not merged.get("student") else \
            _model_spec(merged["student"], name, "student")
        if "data_args" in overrides:
            fields["data_args"] = {**(fields.get("data_args") or {}), **overrides.pop("data_args")}
        if "student_args" in overrides:  # e.g. a family of student sizes for scaling
            if merged.get("kind") == "self":
                raise ConfigError(f"setup {name!r} is self-distillation: its student is the teacher, "
                                  "so student_args cannot change it")
            student = ModelSpec(student.name, {**student.args, **as_mapping("student_args", overrides.pop("student_args"))})
        for key in ("rcd_variants", "kd_weight_variants"):
            if key in overrides:
                overrides[key] = as_list(key, overrides[key])
        for key in ("variant_args", "objective_args", "backdoor"):
            if key in overrides:
                overrides[key] = as_mapping(key, overrides[key])
        if overrides.get("objective", fields.get("objective")) != fields.get("objective") and "objective_args" not in overrides:
            fields.pop("objective_args", None)  # another objective than the study file's: not that one's arguments
        fields.update(overrides)
        fields.setdefault("title", name)
        fields["data_args"] = fields.get("data_args") or {}
        fields["objective_args"] = _objective_args(name, fields.get("objective", "hinton"), fields.get("objective_args"))
        cfg = SetupConfig(name=name, scale=scale, teacher=teacher, student=student, train=train, recipe=recipe,
                          **fields)
        _check_names(cfg)
        if cfg.n_seeds > self.limits["n_seeds"]:
            raise ConfigError(f"setup {name!r} at scale {scale!r}: n_seeds {cfg.n_seeds} is above the study's limit of "
                              f"{self.limits['n_seeds']} (study.yaml `defaults: limits: n_seeds`)")
        return cfg

    def _check_limits(self, limits) -> dict:
        """The upper bounds on seeds and workers (`defaults: limits:`), positive integers."""
        if not isinstance(limits, dict) or set(limits) - set(LIMITS):
            raise ConfigError(f"{self._where()}: `defaults: limits:` must be a mapping with keys {sorted(LIMITS)}, "
                              f"got {limits!r}")
        out = {**LIMITS, **limits}
        for k, v in out.items():
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{self._where()}: `defaults: limits: {k}` must be an integer >= 1, got {v!r}")
        return out

    # -------------------------------------------------------------------------------- plans
    def plan(self, scale: str) -> list[PlanEntry]:
        """The chapters of a scale, in order. Entries without an id are named after their setup."""
        self.check_scale(scale)
        entries = []
        for item in self.scales[scale].get("plan") or []:
            if not isinstance(item, (str, dict)):
                raise ConfigError(f"{self._where()}: plan entry {item!r} of scale {scale!r} must be a setup name or a "
                                  f"mapping with keys {', '.join(sorted(PLAN_KEYS))}")
            item = {"setup": item} if isinstance(item, str) else dict(item)
            unknown = set(item) - PLAN_KEYS
            if unknown:
                raise ConfigError(f"{self._where()}: plan entry {item} of scale {scale!r} has unknown key(s) "
                                  f"{sorted(unknown)}; allowed: {', '.join(sorted(PLAN_KEYS))}")
            if "setup" not in item:
                raise ConfigError(f"{self._where()}: plan entry {item} of scale {scale!r} names no setup")
            if not isinstance(item["setup"], str):
                raise ConfigError(f"{self._where()}: plan entry {item} of scale {scale!r}: setup must be a setup's name, "
                                  f"got {item['setup']!r}")
            params = item.get("params") or {}
            if not isinstance(params, dict):
                raise ConfigError(f"{self._where()}: plan entry {item} of scale {scale!r}: params must be a mapping of "
                                  f"parameter names to values, got {params!r}")
            entry_id = str(item.get("id", item["setup"]))
            if not SAFE_ID.fullmatch(entry_id):
                raise ConfigError(f"{self._where()}: plan entry id {entry_id!r} of scale {scale!r} is not a safe file name "
                                  "(its chapter is written under that name): use letters, digits, '.', '_' and '-', "
                                  "starting with a letter or digit")
            entries.append(PlanEntry(id=entry_id, setup=item["setup"], params=dict(params), title=item.get("title")))
        ids = [e.id for e in entries]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{self._where()}: scale {scale!r} plan has duplicate ids: "
                              f"{sorted({i for i in ids if ids.count(i) > 1})}")
        return entries

    def pending(self, scale: str) -> list[str]:
        """Plan entries of a shipped scale whose runs are not shipped yet (study.yaml `pending:`): the
        book names them as still to train instead of treating them as complete or broken."""
        ids = [e.id for e in self.plan(scale)]
        out = list(self.scale_info(scale).get("pending") or [])
        unknown = [p for p in out if p not in ids]
        if unknown:
            raise ConfigError(f"{self._where()}: scale {scale!r} lists pending entries {unknown} that are not in its "
                              f"plan; plan entries: {', '.join(ids)}")
        return out

    def entry_setup(self, scale: str, entry: PlanEntry, **extra: Any) -> SetupConfig:
        return self.setup(entry.setup, scale, **{**entry.params, **extra})


def is_device_name(device: Any) -> bool:
    """auto, cpu, cuda or cuda:N (whether CUDA is present is checked where a scale runs)."""
    if not isinstance(device, str):
        return False
    kind, _, index = device.partition(":")
    return device in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit())


def _model_spec(raw: Any, setup: str, role: str) -> ModelSpec:
    if not isinstance(raw, dict) or "model" not in raw:
        raise ConfigError(f"setup {setup!r}: `{role}:` must be a mapping with `model:` (and optional `args:`), got {raw!r}")
    return ModelSpec(raw["model"], dict(raw.get("args") or {}))


def _from_yaml(what: str, value: Any, kind: str) -> Any:
    """papermill -p passes strings: parse them as YAML, naming the parameter when they do not parse."""
    if not isinstance(value, str):
        return value
    try:
        return yamlread.load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} must be a {kind}; could not parse {value!r}: {e}") from None


def as_list(what: str, value: Any) -> list:
    """A list parameter; a string is parsed as YAML (e.g. -p rcd_variants '[permuted]'), a scalar becomes [x]."""
    value = _from_yaml(what, value, "list, e.g. '[a, b]'")
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def as_mapping(what: str, value: Any) -> dict:
    """A mapping parameter; a string is parsed as YAML (e.g. -p student_args '{hidden: [8]}')."""
    value = _from_yaml(what, value, "mapping, e.g. '{key: value}'")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a mapping, e.g. '{{key: value}}', got {value!r}")
    return value


def _objective_args(setup: str, objective: Any, args: Any) -> dict:
    """The KD objective's arguments with its defaults filled in (so `dkd` and `dkd` with its default arguments
    spelt out are one run); an unknown objective or argument fails naming the setup."""
    from .objectives import check_objective

    try:
        return check_objective(objective, args)
    except ConfigError as e:
        raise ConfigError(f"setup {setup!r}: {e}") from None


def _check_names(cfg: SetupConfig) -> None:
    """Dataset, models and variant exist; the backdoor fits the data; the primary family names tests
    that exist. Imported here, not in config, so that the config module depends on nothing."""
    from . import arms, backdoor, data, models
    from .noises import NOISES, feature_map_noises
    from .stats import COMPARISONS, DIRECTIONS

    data.DATASETS.check(cfg.dataset)
    models.MODELS.check(cfg.teacher.name)
    models.MODELS.check(cfg.student.name)
    arms.VARIANTS.check(cfg.variant)
    for noise in cfg.noise_variants:
        if noise not in NOISES:
            raise ConfigError(f"setup {cfg.name!r}: unknown RCD noise {noise!r}; allowed: {', '.join(NOISES.names())}")
        if cfg.variant != "logit" and noise not in feature_map_noises():
            raise ConfigError(f"setup {cfg.name!r}: RCD noise {noise!r} needs the teacher's own outputs of each "
                              f"example, which a feature variant ({cfg.variant!r}) has no fixed form of; use "
                              f"{', '.join(feature_map_noises())}")
    for triple in cfg.primary:  # a misspelled test would silently leave the family and change its correction
        if len(triple) != 3:
            raise ConfigError(f"setup {cfg.name!r}: primary test {list(triple)!r} must be [metric, arm_a, arm_b]")
        metric, a, b = triple
        if metric not in DIRECTIONS:
            raise ConfigError(f"setup {cfg.name!r}: primary test {list(triple)!r} names unknown metric {metric!r}; "
                              f"allowed: {', '.join(DIRECTIONS)}")
        if (a, b) not in COMPARISONS:
            raise ConfigError(f"setup {cfg.name!r}: primary test {list(triple)!r} compares {a} with {b}; "
                              f"allowed comparisons: {', '.join(f'{x} {y}' for x, y in COMPARISONS)}")
    if cfg.backdoor:
        meta = data.DATASETS.meta(cfg.dataset)
        backdoor.check_spec(dict(cfg.backdoor), meta["n_classes"], modality=meta["modality"])


def load_study(path: str | os.PathLike | None = None) -> Study:
    path = Path(path or os.environ.get("KDLIB_STUDY", DEFAULT_STUDY))
    if not path.is_file():
        raise ConfigError(f"study file {path} not found")
    try:
        with path.open() as f:  # from the stream, so parse errors name the file and line
            raw = yamlread.load(f)
    except yaml.YAMLError as e:
        raise ConfigError(f"study file {path} is not valid YAML: {e}") from None
    return Study(raw or {}, path)


def get_setup(name: str, scale: str = "cpu", study: Optional[Study] = None, **overrides: Any) -> SetupConfig:
    return (study or load_study()).setup(name, scale, **overrides)
