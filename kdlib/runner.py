"""Runs the arms of a setup through the trainer into the store; finished runs are loaded, not retrained."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable, Optional

import numpy as np
import pandas as pd

from .config import SetupConfig
from . import backdoor as bd
from .data import DataBundle, load_dataset
from .metrics import backdoor_metrics, functional_metrics
from .provenance import provenance
from .store import RunStore
from .train import build_for_data, predict, resolve_device, train

Progress = Optional[Callable[[str], None]]


def load_setup_data(setup: SetupConfig) -> DataBundle:
    return load_dataset(setup.dataset, **setup.data_args)


def run_one(setup: SetupConfig, arm: str, seed: int, store: RunStore, device: str = "auto",
            rcd_noise: Optional[str] = None, progress: Progress = print, epoch_progress: bool = False) -> dict:
    """Train (or load) one run and return its metrics. Trains the seed's teacher first when missing."""
    cfg = setup.run(arm, seed, rcd_noise)
    if store.has(cfg):
        return store.metrics(cfg)
    data = load_setup_data(setup)
    dev = resolve_device(device)
    teacher_cfg = None if arm == "teacher" else setup.teacher_run(seed)
    if teacher_cfg is not None and not store.has(teacher_cfg):
        run_one(setup, "teacher", seed, store, device, progress=progress, epoch_progress=epoch_progress)
    teacher_train_logits = teacher_model = teacher_test = None
    if teacher_cfg is not None:
        teacher_train_logits = store.train_logits(teacher_cfg)
        teacher_test = store.test_logits(teacher_cfg)
        if arm in ("kd", "rcd") and (setup.variant != "logit" or setup.train["augment"]):
            teacher_model = build_for_data(setup.teacher, data, teacher_cfg.init_seed)
            teacher_model.load_state_dict(store.model_state(teacher_cfg))
    spec = bd.check_spec(cfg.backdoor, data.n_classes, data.input_shape) if cfg.backdoor else None
    train_data = data
    if spec is not None and arm == "teacher":  # only the teacher sees the poisoned training set
        x, y, _ = bd.poison(data.x_train, data.y_train, spec, cfg.order_seed)
        train_data = replace(data, x_train=x, y_train=y)
    res = train(cfg, train_data, dev, teacher_train_logits=teacher_train_logits, teacher=teacher_model,
                progress=progress if epoch_progress else None)
    backdoor_logits = None
    if spec is not None:
        eb = cfg.train["eval_batch_size"]
        if arm == "teacher":  # KD targets and train accuracy on the clean inputs the students see
            res.train_logits = predict(res.model, data.x_train, eb, dev)
            res.train_accuracy = float((res.train_logits.argmax(1) == data.y_train).float().mean())
        triggered = bd.triggered_test(data.x_test, data.y_test, data.x_train, spec)
        backdoor_logits = predict(res.model.to(dev), triggered, eb, dev)
        res.model.cpu()
    # metrics from the float16 logits that are stored, so recomputing them later gives the same numbers
    test16 = res.test_logits.numpy().astype(np.float16).astype(np.float32)
    metrics = functional_metrics(test16, teacher_test, data.y_test.numpy())
    metrics["train_accuracy"] = res.train_accuracy
    metrics["generalisation_gap"] = 100.0 * (res.train_accuracy - metrics["accuracy"])
    if backdoor_logits is not None:
        b16 = backdoor_logits.numpy().astype(np.float16).astype(np.float32)
        metrics.update(backdoor_metrics(b16, test16, data.y_test.numpy(), spec["target"]))
    prov = provenance(dev, res.seconds)
    prov["epochs"] = res.epoch_log
    prov["data"] = data.summary()
    store.write(cfg, metrics, prov, res.test_logits,
                train_logits=res.train_logits if arm == "teacher" else None,
                model_state=res.model.state_dict() if arm == "teacher" else None, backdoor_logits=backdoor_logits)
    return metrics


def run_setup(setup: SetupConfig, store: RunStore, device: str = "auto", progress: Progress = print) -> pd.DataFrame:
    """All runs of a setup (teachers first per seed); prints one progress line per run."""
    runs = setup.runs()
    started = time.perf_counter()
    for i, cfg in enumerate(runs, 1):
        if store.has(cfg):
            status = "done before"
        else:
            t0 = time.perf_counter()
            m = run_one(setup, cfg.arm, cfg.seed, store, device, rcd_noise=cfg.rcd_noise, progress=progress)
            status = f"trained in {time.perf_counter() - t0:.2f} s, test accuracy {m['accuracy']:.3f}"
        if progress:
            progress(f"[{setup.name} {i}/{len(runs)}, {time.perf_counter() - started:.0f} s] {cfg.label}: {status}")
    return setup_results(setup, store)


def setup_results(setup: SetupConfig, store: RunStore) -> pd.DataFrame:
    """The stored results of exactly this setup configuration, one row per run (missing runs left out)."""
    rows = []
    for cfg in setup.runs():
        if not store.has(cfg):
            continue
        prov = store.provenance(cfg)
        rows.append({"setup": setup.name, "arm": cfg.arm, "seed": cfg.seed, "rcd_noise": cfg.rcd_noise,
                     "is_main_rcd": cfg.arm != "rcd" or cfg.rcd_noise == setup.rcd_noise, "hash": cfg.hash,
                     "teacher_hash": cfg.teacher_hash, **store.metrics(cfg),
                     "seconds": prov["seconds"], "device": prov["device"], "code_version": prov["code_version"]})
    return pd.DataFrame(rows)


def main_arms(results: pd.DataFrame) -> pd.DataFrame:
    """The four arms with the setup's main RCD noise (the side-by-side RCD variants dropped)."""
    return results[results["is_main_rcd"]].reset_index(drop=True)
