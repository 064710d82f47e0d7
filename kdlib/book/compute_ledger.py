"""The compute ledger of a scale (seconds and device of every run, per plan entry) and what the stored runs
say about their reproducibility. Reads the store only."""
from __future__ import annotations

from typing import Optional

import pandas as pd

from ..results import ResultsFolder
from .frames import damaged_runs, repair_command, run_table
from .setup_analysis import plan_setups


def compute_ledger(study, scale: str, results_dir: Optional[str] = None) -> tuple[Optional[pd.DataFrame], Optional[pd.DataFrame]]:
    """(per entry: runs, seeds, seconds, device, and the wall time of the training phases that trained the
    entry alone, with their notes; with a distinct-runs total) and every run, in plan order."""
    folder = ResultsFolder.of(study, scale, results_dir)
    store = folder.existing_store()
    if store is None:
        return None, None
    frames = []
    for entry_id, cfg in plan_setups(study, scale):
        r = run_table(store, cfg)
        if len(r):
            frames.append(r.assign(entry=entry_id))
    if not frames:
        return None, None
    ledger = pd.concat(frames, ignore_index=True)
    provs = [store.provenance(h) for h in ledger["hash"]]
    # GPU runs record the device's mean utilisation over their epochs (NVML); CPU runs have none
    ledger["gpu_utilisation"] = [p.get("gpu_utilisation") for p in provs]
    finished: dict = {}  # entry -> its stored runs' finished_at
    for e, p in zip(ledger["entry"], provs):
        finished.setdefault(e, []).append(p.get("finished_at"))
    per = ledger.groupby("entry", sort=False).agg(runs=("hash", "size"), seeds=("seed", "nunique"),
                                                  seconds=("seconds", "sum"), device=("device", "first"))
    # each entry's cost over the phases that trained its stored runs (not runs since replaced)
    costs = {e: folder.entry_cost(e, finished[e]) for e in per.index}
    # an entry trained beside others (one phase for the whole plan, as the offline study) has no wall time of its own
    per["wall_minutes"] = [c["wall_seconds"] / 60 if c["wall_seconds"] is not None else float("nan") for c in costs.values()]
    per["wall_note"] = ["; ".join(dict.fromkeys(c["notes"])) for c in costs.values()]
    distinct = ledger.drop_duplicates("hash")
    phases = folder.training_log()["phases"]
    per.loc["total (distinct runs)"] = [len(distinct), "", distinct["seconds"].sum(), " / ".join(distinct["device"].unique()),
                                        sum(p.get("wall_seconds", 0) for p in phases) / 60 if phases else float("nan"),
                                        f"{len(phases)} training phase(s)" if phases else ""]
    return per, ledger


def determinism_note(study, scales, results_dir: Optional[str] = None) -> str:
    """One line per scale: threads, devices, and whether every run is bitwise reproducible."""
    lines = []
    for i, s in enumerate(scales):
        store = ResultsFolder.of(study, s, results_dir if i == 0 else None).existing_store()
        if store is None:
            continue
        provs = [store.provenance(h) for h in store.hashes()]
        if not provs:
            continue
        threads = sorted({str(p.get("cpu_threads")) for p in provs})
        devices = sorted({p["device"] for p in provs})
        not_bitwise = [p for p in provs if not p.get("bitwise_reproducible", False)]
        reasons = sorted({r for p in not_bitwise for r in p.get("nondeterminism", [])})
        lines.append(f"- `{s}`: {len(provs)} runs on {' / '.join(devices)}; CPU training threads {', '.join(threads)}; "
                     + ("every run is bitwise reproducible on the same kind of machine."
                        if not not_bitwise else f"{len(not_bitwise)} runs are not bitwise reproducible: {'; '.join(reasons)}."))
    return "\n".join(lines) or "No runs in this build."


def replications_table(study, scales, results_dir: Optional[str] = None) -> pd.DataFrame:
    """Entries whose runs were retrained and compared with the runs before (`--compare-with --record`), of
    every scale: what they were compared with, on which machines, how many tests read differently, and
    whether the scale's verdicts changed. A record whose entry's runs have changed since is named as stale."""
    from ..compare import compared_text, is_current

    rows = []
    for i, s in enumerate(scales):
        folder = ResultsFolder.of(study, s, results_dir if i == 0 else None)
        records, store = folder.replications(), folder.existing_store()
        setups = dict(plan_setups(study, s)) if records and store is not None else {}
        for entry_id, rec in records.items():
            current = entry_id in setups and is_current(rec, setups[entry_id], store)
            tests = [r for table in rec["readings"].values() for r in table if r["reading"] not in ("", "not computed")]
            changed = [f"{r['quantity']} (w = {w})" for w, table in rec["readings"].items() for r in table
                       if r["reading"].startswith("CHANGED")]
            v = rec["verdicts"]
            rows.append({
                "scale": s, "entry": entry_id,
                "these runs": f"{', '.join(rec['this']['code_versions'])} on {' / '.join(rec['this']['devices'])}",
                "compared runs": f"{compared_text(rec)}: {', '.join(rec['other']['code_versions'])} on "
                                 f"{' / '.join(rec['other']['devices'])}",
                "runs differing": f"{rec['differing']} of {rec['runs']}",
                "tests reading differently": f"{len(changed)} of {len(tests)}" + (f": {'; '.join(changed)}" if changed else ""),
                "verdicts": "identical" if not v["changed"] else f"{v['changed']} of {v['compared']} differ",
                "current": "yes" if current else "no: the entry's runs changed since (not shown in its chapter)"})
    return pd.DataFrame(rows, columns=["scale", "entry", "these runs", "compared runs", "runs differing",
                                       "tests reading differently", "verdicts", "current"])


def damage_table(study, scale: str, results_dir: Optional[str] = None) -> pd.DataFrame:
    """Every stored run of a scale's plan that does not vouch for itself (left out of every table): entry,
    run, why, and the command that retrains it."""
    store = ResultsFolder.of(study, scale, results_dir).existing_store()
    rows = []
    for entry_id, cfg in plan_setups(study, scale) if store is not None else []:
        for label, why in damaged_runs(store, cfg).items():
            rows.append({"entry": entry_id, "run": label, "problem": why, "repair": repair_command(scale, entry_id)})
    return pd.DataFrame(rows, columns=["entry", "run", "problem", "repair"])
