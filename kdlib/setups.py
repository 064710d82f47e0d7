"""The study file (study.yaml): the registry of setups, the scales, and the plan of what runs where.

A setup entry holds its base fields plus per-scale overrides under `scales:`. Resolution order:
protocol defaults -> the setup's base fields -> its `scales[<scale>]` entry -> the caller's overrides.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

from .config import ConfigError, ModelSpec, SetupConfig
from .paths import REPO_ROOT
from .registry import Registry

DEFAULT_STUDY = REPO_ROOT / "study.yaml"
SETUP_FIELDS = {"title", "modality", "kind", "dataset", "data_args", "teacher", "student", "train", "variant",
                "variant_args", "alpha", "temperature", "rcd_noise", "rcd_variants", "n_seeds", "base_seed",
                "provenance", "description", "scales", "backdoor"}


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


@dataclass
class PlanEntry:
    """One notebook execution of the study: a setup at a scale with a parameter set."""

    id: str
    setup: str
    params: dict
    title: Optional[str] = None


class Study:
    def __init__(self, raw: dict, path: Optional[Path] = None):
        self.path = path
        self.raw = raw
        self.defaults = raw.get("defaults", {})
        self.scales = raw.get("scales", {})
        self.setups = Registry("setup")
        for name, spec in raw.get("setups", {}).items():
            unknown = set(spec) - SETUP_FIELDS
            if unknown:
                raise ConfigError(f"setup {name!r} has unknown field(s) {sorted(unknown)}; allowed: {sorted(SETUP_FIELDS)}")
            self.setups.register(name)(lambda spec=spec: spec)

    def check_scale(self, scale: str) -> str:
        if scale not in self.scales:
            raise ConfigError(f"unknown scale {scale!r}; allowed: {', '.join(self.scales)}")
        return scale

    def spec(self, name: str) -> dict:
        return copy.deepcopy(self.setups.get(name)())

    def setup(self, name: str, scale: str = "cpu", **overrides: Any) -> SetupConfig:
        self.check_scale(scale)
        spec = self.spec(name)
        scales = spec.pop("scales", {})
        if scale not in scales:
            raise ConfigError(f"setup {name!r} has no {scale!r} scale; it has: {', '.join(scales) or 'none'}")
        merged = deep_merge(deep_merge(self.defaults, {"n_seeds": self.scales[scale].get("n_seeds", 10)}),
                           deep_merge(spec, scales[scale] or {}))
        teacher = ModelSpec(merged["teacher"]["model"], merged["teacher"].get("args", {}))
        student_raw = merged.get("student")
        student = teacher if merged.get("kind") == "self" or student_raw is None else \
            ModelSpec(student_raw["model"], student_raw.get("args", {}))
        fields = {k: v for k, v in merged.items() if k not in ("teacher", "student")}
        fields.setdefault("title", name)
        fields.setdefault("data_args", {})
        fields.setdefault("train", {})
        cfg = SetupConfig(name=name, scale=scale, teacher=teacher, student=student, **fields)
        return cfg.with_overrides(**overrides) if overrides else cfg

    def names(self, scale: Optional[str] = None) -> list[str]:
        return [n for n in self.setups if scale is None or scale in (self.spec(n).get("scales") or {})]

    def plan(self, scale: str) -> list[PlanEntry]:
        """The notebook runs of a scale, in order. Entries without an id are named after their setup."""
        self.check_scale(scale)
        entries = []
        for item in self.scales[scale].get("plan", []):
            item = {"setup": item} if isinstance(item, str) else dict(item)
            self.setups.check(item["setup"])
            unknown = set(item) - {"id", "setup", "params", "title"}
            if unknown:
                raise ConfigError(f"plan entry {item} has unknown key(s) {sorted(unknown)}; allowed: id, setup, params, title")
            entries.append(PlanEntry(id=item.get("id", item["setup"]), setup=item["setup"],
                                     params=item.get("params", {}), title=item.get("title")))
        ids = [e.id for e in entries]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"scale {scale!r} plan has duplicate ids: {sorted({i for i in ids if ids.count(i) > 1})}")
        return entries


def load_study(path: str | os.PathLike | None = None) -> Study:
    path = Path(path or os.environ.get("KDLIB_STUDY", DEFAULT_STUDY))
    if not path.is_file():
        raise FileNotFoundError(f"study file {path} not found")
    return Study(yaml.safe_load(path.read_text()) or {}, path)


def get_setup(name: str, scale: str = "cpu", study: Optional[Study] = None, **overrides: Any) -> SetupConfig:
    return (study or load_study()).setup(name, scale, **overrides)
