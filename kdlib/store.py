"""The run store: one folder per run, named by the hash of its full config.

    <root>/<hash>/config.json       the RunConfig
                  metrics.json      test metrics (students: against the teacher of the same seed)
                  provenance.json   code version, package versions, device, seconds, epoch log
                  test_logits.npy   float16 test logits, so every statistic can be recomputed
                  train_logits.npy  teachers only: float32 logits on the training set (KD targets)
                  model.pt          teachers only: final weights (feature variants, augmentation)
                  backdoor_logits.npy  backdoor setups: float16 logits on the triggered test inputs

A run is written into `<root>/.tmp-<hash>-<random>/` and renamed into place in one step, so a folder
named by a hash is always complete; a killed run leaves only a `.tmp-*` folder, which is never read.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from .config import RunConfig


class RunStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, run: RunConfig | str) -> Path:
        return self.root / (run if isinstance(run, str) else run.hash)

    def has(self, run: RunConfig | str) -> bool:
        return (self.path(run) / "metrics.json").is_file()

    def write(self, cfg: RunConfig, metrics: dict, provenance: dict, test_logits: torch.Tensor,
              train_logits: Optional[torch.Tensor] = None, model_state: Optional[dict] = None,
              backdoor_logits: Optional[torch.Tensor] = None) -> Path:
        final = self.path(cfg)
        tmp = self.root / f".tmp-{cfg.hash}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, sort_keys=True, default=str))
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
            (tmp / "provenance.json").write_text(json.dumps(provenance, indent=1, sort_keys=True))
            np.save(tmp / "test_logits.npy", test_logits.numpy().astype(np.float16))
            if train_logits is not None:
                np.save(tmp / "train_logits.npy", train_logits.numpy().astype(np.float32))
            if model_state is not None:
                torch.save(model_state, tmp / "model.pt")
            if backdoor_logits is not None:
                np.save(tmp / "backdoor_logits.npy", backdoor_logits.numpy().astype(np.float16))
            os.replace(tmp, final) if not final.exists() else shutil.rmtree(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _require(self, run) -> Path:
        p = self.path(run)
        if not self.has(run):
            raise FileNotFoundError(f"run {run if isinstance(run, str) else run.label} is not in the store {self.root}")
        return p

    def metrics(self, run) -> dict:
        return json.loads((self._require(run) / "metrics.json").read_text())

    def config(self, run) -> dict:
        return json.loads((self._require(run) / "config.json").read_text())

    def provenance(self, run) -> dict:
        return json.loads((self._require(run) / "provenance.json").read_text())

    def test_logits(self, run) -> np.ndarray:
        return np.load(self._require(run) / "test_logits.npy").astype(np.float32)

    def backdoor_logits(self, run) -> np.ndarray:
        return np.load(self._require(run) / "backdoor_logits.npy").astype(np.float32)

    def train_logits(self, run) -> torch.Tensor:
        return torch.from_numpy(np.load(self._require(run) / "train_logits.npy"))

    def model_state(self, run) -> dict:
        return torch.load(self._require(run) / "model.pt", map_location="cpu", weights_only=True)

    def hashes(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and self.has(p.name))

    def stale_tmp(self) -> list[Path]:
        """Folders left by interrupted runs (safe to delete)."""
        return sorted(p for p in self.root.glob(".tmp-*") if p.is_dir())

    def load_runs(self, setup: Optional[str] = None) -> pd.DataFrame:
        """Every finished run (optionally of one setup) as one row: config, metrics and provenance."""
        rows = []
        for h in self.hashes():
            cfg = self.config(h)
            if setup is not None and cfg["setup"] != setup:
                continue
            prov = self.provenance(h)
            rows.append({"hash": h, "setup": cfg["setup"], "arm": cfg["arm"], "seed": cfg["seed"],
                         "rcd_noise": cfg.get("rcd_noise"), "alpha": cfg.get("alpha"),
                         "temperature": cfg.get("temperature"), "variant": cfg.get("variant"),
                         "teacher_hash": cfg.get("teacher_hash"), "model": cfg["model"]["name"],
                         "dataset": cfg["dataset"], **self.metrics(h),
                         "seconds": prov["seconds"], "device": prov["device"],
                         "code_version": prov["code_version"]})
        return pd.DataFrame(rows)
