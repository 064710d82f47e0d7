"""The run store as tables: one row per stored run of a setup (its arm, seed, KD weight, noise and metrics),
and the four arms under one reading of alpha. The store itself holds files; everything tabular is here."""
from __future__ import annotations

from typing import Iterable, Optional

import pandas as pd

from ..config import RunConfig, SetupConfig
from ..store import RunStore


def run_table(store: RunStore, setup: SetupConfig, runs: Optional[Iterable[RunConfig]] = None) -> pd.DataFrame:
    """The stored results of exactly this setup configuration, one row per run (missing runs left out;
    `RunStore.missing` lists them; so are damaged ones, which `store.damage` names)."""
    rows = []
    for cfg in runs if runs is not None else setup.runs():
        if not store.has(cfg) or store.problem(cfg):
            continue
        prov = store.provenance(cfg)
        main = cfg.arm not in ("kd", "rcd") or (cfg.kd_weight == setup.kd_weight
                                                  and (cfg.arm == "kd" or cfg.rcd_noise == setup.rcd_noise))
        rows.append({"setup": setup.name, "arm": cfg.arm, "seed": cfg.seed, "kd_weight": cfg.kd_weight,
                     "rcd_noise": cfg.rcd_noise, "is_main": main, "hash": cfg.hash,
                     "teacher_hash": cfg.teacher_hash, **store.metrics(cfg),
                     "seconds": prov["seconds"], "device": prov["device"], "code_version": prov["code_version"]})
    return pd.DataFrame(rows)


def damaged_runs(store: RunStore, setup: SetupConfig) -> dict[str, str]:
    """label -> why, for the runs of a setup that are stored but do not vouch for themselves (left out)."""
    return {cfg.label: store.damage[cfg.hash] for cfg in setup.runs() if store.has(cfg) and store.problem(cfg)}


def stored_count(store: Optional[RunStore], setup: SetupConfig) -> int:
    """How many of a setup's runs the store holds (0 without a store): how far an entry in training has got."""
    return 0 if store is None else sum(store.has(cfg) for cfg in setup.runs())


def repair_command(scale: str, entry_id: str) -> str:
    return f"python -m kdlib.driver --scale {scale} --only {entry_id} --repair --train-only"


def main_arms(results: pd.DataFrame, kd_weight: Optional[float] = None) -> pd.DataFrame:
    """The four arms under one reading: teacher and control, kd and rcd at `kd_weight` (default: the
    setup's main KD weight) with the main RCD noise."""
    if results.empty:
        return results
    if kd_weight is None:
        return results[results["is_main"]].reset_index(drop=True)
    main_noise = results.loc[results["is_main"] & (results["arm"] == "rcd"), "rcd_noise"]
    noise = main_noise.iloc[0] if len(main_noise) else None
    keep = results["arm"].isin(["teacher", "control"]) | (
        (results["kd_weight"] == kd_weight) & ((results["arm"] == "kd") | (results["rcd_noise"] == noise)))
    return results[keep].reset_index(drop=True)
