"""A backdoored teacher (PROTOCOL.md, "Safety"): a trigger patch mapped to a target class.

The teacher trains on a training set in which a seeded fraction of the non-target examples carry the
trigger and are relabelled to the target class. The students (control, kd, rcd) train on the clean
set, and kd / rcd distil the teacher's outputs on clean inputs only. Every model is then measured on
the test examples of other classes with the trigger added: the attack success rate (ASR) is the
fraction classified as the target. Does the backdoor reach the kd student more than the control?
"""
from __future__ import annotations

import torch

from .config import ConfigError

KEYS = {"target", "poison_fraction", "patch"}


def check_spec(spec: dict, n_classes: int, input_shape: tuple | None = None) -> dict:
    """The spec with defaults filled in; `input_shape` (C, H, W) is checked when known."""
    unknown = set(spec) - KEYS
    if unknown:
        raise ConfigError(f"unknown backdoor option(s) {sorted(unknown)}; allowed: {sorted(KEYS)}")
    out = {"target": 0, "poison_fraction": 0.1, "patch": 3, **spec}
    if not isinstance(out["target"], int) or not 0 <= out["target"] < n_classes:
        raise ConfigError(f"backdoor target must be a class index in [0, {n_classes - 1}], got {out['target']!r}")
    if not 0.0 < float(out["poison_fraction"]) <= 1.0:
        raise ConfigError(f"backdoor poison_fraction must lie in (0, 1], got {out['poison_fraction']!r}")
    if input_shape is not None and len(input_shape) != 3:
        raise ConfigError(f"the backdoor trigger is an image patch; inputs of shape {input_shape} are not images")
    largest = min(input_shape[1:]) if input_shape is not None else 10 ** 6
    if isinstance(out["patch"], bool) or not isinstance(out["patch"], int) or not 1 <= out["patch"] <= largest:
        raise ConfigError(f"backdoor patch must be an integer in [1, {largest}], got {out['patch']!r}")
    return out


def apply_trigger(x: torch.Tensor, patch: int, value: float) -> torch.Tensor:
    """A copy of the images (N, C, H, W) with a bright square in the bottom-right corner."""
    x = x.clone()
    x[:, :, -patch:, -patch:] = value
    return x


def trigger_value(x_train: torch.Tensor) -> float:
    """The brightest value of the (normalised) training images: the trigger stands out in any channel."""
    return float(x_train.max())


def poison(x: torch.Tensor, y: torch.Tensor, spec: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Poisoned training set: a seeded `poison_fraction` of the non-target examples get the trigger and
    the target label. Returns (x, y, indices poisoned)."""
    candidates = torch.nonzero(y != spec["target"]).flatten()
    n = max(1, round(spec["poison_fraction"] * len(candidates)))
    g = torch.Generator().manual_seed(seed)
    chosen = candidates[torch.randperm(len(candidates), generator=g)[:n]].sort().values
    x, y = x.clone(), y.clone()
    x[chosen] = apply_trigger(x[chosen], spec["patch"], trigger_value(x))
    y[chosen] = spec["target"]
    return x, y, chosen


def triggered_test(x_test: torch.Tensor, y_test: torch.Tensor, x_train: torch.Tensor, spec: dict) -> torch.Tensor:
    """The test examples whose label is not the target, with the trigger added."""
    keep = y_test != spec["target"]
    return apply_trigger(x_test[keep], spec["patch"], trigger_value(x_train))
