"""A backdoored teacher (PROTOCOL.md, "Safety"): a trigger mapped to a target class.

The teacher trains on a training set in which a seeded fraction of the non-target examples carry the
trigger and are relabelled to the target class. The students (control, kd, rcd) train on the clean
set, and kd / rcd distil the teacher's outputs on clean inputs only. Every model is then measured on
the test examples of other classes with the trigger added: the attack success rate (ASR) is the
fraction classified as the target. Does the backdoor reach the kd student more than the control?

Triggers: for images a bright square in the bottom-right corner (`patch` pixels); for token sequences
a trigger token written at a fixed position (`token`, default the last vocabulary id, which is the
rarest word kept when the corpus fills the vocabulary and otherwise a token no review contains, at
`position`, default 0), the language-model setting of the paper's backdoor experiment.
"""
from __future__ import annotations

from typing import Optional

import torch

from .config import ConfigError

KEYS = {"target", "poison_fraction", "patch", "token", "position"}
MODALITIES = ("image", "text")


def check_spec(spec: dict, n_classes: int, input_shape: Optional[tuple] = None, modality: Optional[str] = None,
               vocab_size: Optional[int] = None) -> dict:
    """The spec with defaults filled in; shapes and vocabulary are checked when known."""
    unknown = set(spec) - KEYS
    if unknown:
        raise ConfigError(f"unknown backdoor option(s) {sorted(unknown)}; allowed: {sorted(KEYS)}")
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"a backdoor trigger needs images or token sequences; this dataset is {modality!r}")
    out = {"target": 0, "poison_fraction": 0.1, **spec}
    if isinstance(out["target"], bool) or not isinstance(out["target"], int) or not 0 <= out["target"] < n_classes:
        raise ConfigError(f"backdoor target must be a class index in [0, {n_classes - 1}], got {out['target']!r}")
    frac = out["poison_fraction"]
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 < float(frac) <= 1.0:
        raise ConfigError(f"backdoor poison_fraction must lie in (0, 1], got {frac!r}")
    if modality == "text" or "token" in spec or "position" in spec:
        if "patch" in spec:
            raise ConfigError("a backdoor has either an image `patch` or a text `token`, not both")
        out.setdefault("position", 0)
        if vocab_size is not None:
            out.setdefault("token", vocab_size - 1)  # the last id: the rarest word kept, or one never used
        for key, hi in (("token", vocab_size), ("position", input_shape[0] if input_shape else None)):
            v = out.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0 or (hi is not None and v >= hi)):
                raise ConfigError(f"backdoor {key} must be an integer in [0, {hi - 1 if hi else 'n'}], got {v!r}")
        if out.get("token") in (0, 1):
            raise ConfigError("backdoor token 0 is padding and 1 is out-of-vocabulary; pick a word id >= 2")
        return out
    out.setdefault("patch", 3)
    if input_shape is not None and len(input_shape) != 3:
        raise ConfigError(f"the backdoor trigger is an image patch; inputs of shape {input_shape} are not images")
    largest = min(input_shape[1:]) if input_shape is not None else 10 ** 6
    if isinstance(out["patch"], bool) or not isinstance(out["patch"], int) or not 1 <= out["patch"] <= largest:
        raise ConfigError(f"backdoor patch must be an integer in [1, {largest}], got {out['patch']!r}")
    return out


def apply_trigger(x: torch.Tensor, spec: dict, value: float) -> torch.Tensor:
    """A copy of the inputs with the trigger: images (N, C, H, W) get a bright corner square of
    `value`; token sequences (N, L) get the trigger token at its position."""
    x = x.clone()
    if "token" in spec:
        x[:, spec["position"]] = spec["token"]
    else:
        p = spec["patch"]
        x[:, :, -p:, -p:] = value
    return x


def trigger_value(x_train: torch.Tensor) -> float:
    """The brightest value of the (normalised) training images: the trigger stands out in any channel.
    Token ids are not floating point: 0.0 then, unused (a text trigger writes `token`, not a value)."""
    return float(x_train.max()) if x_train.is_floating_point() else 0.0


def poison(x: torch.Tensor, y: torch.Tensor, spec: dict, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Poisoned training set: a seeded `poison_fraction` of the non-target examples get the trigger and
    the target label. Returns (x, y, indices poisoned)."""
    candidates = torch.nonzero(y != spec["target"]).flatten()
    n = max(1, round(spec["poison_fraction"] * len(candidates)))
    g = torch.Generator().manual_seed(seed)
    chosen = candidates[torch.randperm(len(candidates), generator=g)[:n]].sort().values
    x, y = x.clone(), y.clone()
    x[chosen] = apply_trigger(x[chosen], spec, trigger_value(x))
    y[chosen] = spec["target"]
    return x, y, chosen


def triggered_test(x_test: torch.Tensor, y_test: torch.Tensor, x_train: torch.Tensor, spec: dict) -> torch.Tensor:
    """The test examples whose label is not the target, with the trigger added."""
    keep = y_test != spec["target"]
    return apply_trigger(x_test[keep], spec, trigger_value(x_train))
