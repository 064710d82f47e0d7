"""Evaluation of a trained model, apart from training: logits on named input sets and the penultimate
representation (the input of the final linear layer) on a fixed subsample of the test set, for CKA."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .models import classifier_of
from .train import autocast, channels_last

CKA_EXAMPLES = 512  # test examples whose penultimate features every run stores (float16)


def cka_rows(n_test: int, k: int = CKA_EXAMPLES) -> np.ndarray:
    """The fixed test subsample for representation similarity: the same rows for every run of a dataset."""
    if n_test <= k:
        return np.arange(n_test)
    return np.sort(np.random.default_rng(0).permutation(n_test)[:k])


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int, device: torch.device,
            features: bool = False, precision: str = "fp32") -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32, CPU) in eval mode, batch by batch, in the arithmetic the model trained in
    (`precision`, see `kdlib.train.autocast`); with `features`, also the penultimate representation of
    every row."""
    model.eval()
    out, feats = [], []
    hook = None
    if features:
        hook = classifier_of(model).register_forward_pre_hook(lambda _m, inputs: feats.append(inputs[0].float().cpu()))
    cl = channels_last(device, precision, x)
    try:
        for i in range(0, len(x), batch_size):
            xb = x[i: i + batch_size].to(device, non_blocking=True)
            with autocast(device, precision):
                out.append(model(xb.contiguous(memory_format=torch.channels_last) if cl else xb).float().cpu())
    finally:
        if hook is not None:
            hook.remove()
    logits = torch.cat(out) if out else torch.empty(0)
    return (logits, torch.cat(feats).flatten(1)) if features else logits


def evaluate(model: nn.Module, sets: dict[str, torch.Tensor], device: torch.device, batch_size: int,
             feature_rows: np.ndarray | None = None, precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Logits of `model` on each named input set (e.g. train, test, triggered); with `feature_rows`,
    also `features`: the penultimate representation of those rows of the `test` set."""
    model = model.to(device)
    out = {name: predict(model, x, batch_size, device, precision=precision) for name, x in sets.items()}
    if feature_rows is not None:
        _, out["features"] = predict(model, sets["test"][torch.as_tensor(feature_rows)], batch_size, device,
                                     features=True, precision=precision)
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.cpu()
    return out
