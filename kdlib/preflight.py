"""Check a whole plan before anything trains, and report every problem at once, naming the entry.

A typo in the last entry of a paper-scale plan should cost seconds, not the GPU hours of the entries
before it. For each entry: the setup resolves with its parameters (names, numbers, recipe), its data is
present or downloadable, both models build and run on two real examples, the variant's layers exist
and fit, the backdoor fits the data; then the run store must be writable, and any teacher the plan
reuses from the store must still hold what its new students need.
"""
from __future__ import annotations

from typing import Iterable, Optional

import torch

from .config import ConfigError, SetupConfig, canonical_json
from .studyfile import PlanEntry, Study


class PreflightError(ValueError):
    """The plan cannot run as written; the message lists every problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the plan; nothing was trained:\n"
                         + "\n".join(f"  - {p}" for p in problems))


def _one_line(e: Exception) -> str:
    return f"{type(e).__name__}: {e}" if not isinstance(e, (ConfigError, ValueError)) else str(e)


def check_setup(cfg: SetupConfig) -> None:
    """Everything about one resolved setup that can fail before training; raises on the first problem."""
    from . import backdoor as bd
    from .arms import make_feature_match
    from .data import check_available, load_dataset
    from .train import build_for_data

    from .data import DATASETS

    if cfg.train["augment"] and not DATASETS.meta(cfg.dataset).get("augmentable"):
        raise ConfigError(f"train.augment is on, but random crop and flip do not suit dataset {cfg.dataset!r} "
                          f"(augmentable datasets: {', '.join(n for n in DATASETS if DATASETS.meta(n).get('augmentable'))})")
    check_available(cfg.dataset, **cfg.data_args)
    data = load_dataset(cfg.dataset, **cfg.data_args)
    example = data.x_train[:2]
    models = {}
    for role, spec in (("teacher", cfg.teacher), ("student", cfg.student)):
        try:
            m = build_for_data(spec, data, 0).eval()
            with torch.no_grad():
                out = m(example)
        except ConfigError as e:
            raise ConfigError(f"{role} {spec.name}: {e}") from None
        except Exception as e:  # shape mismatches and the like, found on two real examples
            raise ConfigError(f"{role} {spec.name} {spec.args or ''} does not run on {cfg.dataset} inputs of shape "
                              f"{tuple(data.input_shape)}: {type(e).__name__}: {e}") from None
        if tuple(out.shape) != (2, data.n_classes):
            raise ConfigError(f"{role} {spec.name} gives outputs of shape {tuple(out.shape)}, not (2, {data.n_classes})")
        models[role] = m
    feature = make_feature_match(cfg.variant, cfg.variant_args)
    if feature is not None:
        try:
            feature.attach(models["student"].train(), models["teacher"], example, 0)
        finally:
            feature.detach()
    if cfg.backdoor:
        bd.check_spec(dict(cfg.backdoor), data.n_classes, data.input_shape, data.modality,
                      data.extra.get("vocab_size"))


def resolve_plan(study: Study, scale: str, entries: Iterable[PlanEntry], extra: Optional[dict] = None,
                 deep: bool = True) -> list[tuple[str, SetupConfig]]:
    """(entry id, setup) for every entry; raises PreflightError listing every problem found."""
    problems, out, checked = [], [], {}
    for entry in entries:
        try:
            cfg = study.entry_setup(scale, entry, **(extra or {}))
        except Exception as e:
            problems.append(f"entry {entry.id!r} (setup {entry.setup!r}): {_one_line(e)}")
            continue
        if deep:
            key = canonical_json([cfg.dataset, cfg.data_args, cfg.teacher, cfg.student, cfg.variant, cfg.variant_args,
                                  cfg.backdoor, cfg.train])
            if key not in checked:
                try:
                    check_setup(cfg)
                    checked[key] = None
                except Exception as e:
                    checked[key] = _one_line(e)
            if checked[key]:
                problems.append(f"entry {entry.id!r} (setup {entry.setup!r}): {checked[key]}")
                continue
        out.append((entry.id, cfg))
    if problems:
        raise PreflightError(problems)
    return out


def check_store(store, jobs) -> None:
    """The store is writable if anything is to train, and teachers reused from it still hold what their new students need."""
    from .runner import teacher_needs

    problems = []
    todo = {j.cfg.hash for j in jobs if not store.has(j.cfg)}
    if todo:  # a complete store is only read (it may be a read-only, published one)
        try:
            store.check_writable()
        except Exception as e:
            problems.append(str(e))
    for j in jobs:
        cfg = j.cfg
        if cfg.hash not in todo or not cfg.is_student or cfg.teacher_hash in todo:
            continue
        need_logits, need_model = teacher_needs(cfg)
        if (need_logits or need_model) and not store.has_teacher_extras(cfg.teacher_hash, model=need_model):
            problems.append(f"{cfg.label}: its teacher {cfg.teacher_hash} in {store.root} was stored without its "
                            "training logits / weights (a shipped store); rerun with --repair to retrain that teacher")
    if problems:
        raise PreflightError(problems)
