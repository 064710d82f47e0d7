"""Two stores of one scale side by side (`python -m kdlib.driver --scale S --compare-with OTHER`): the results
folder against another folder or against the folder as a git revision committed it (an entry retrained on
another machine, with another torch, or by newer code). Per plan entry whose stored runs differ: the numbers its
chapter reports and whether each test's reading is the same, under every reading of the KD weight; then the
claims' verdicts at the scale from each store, claim by claim. It reads both stores and trains nothing: a
replication is judged by whether its readings agree, since retrained runs differ in every trajectory."""
from __future__ import annotations

import hashlib
import io
import math
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pandas as pd

from .config import ConfigError
from .paths import REPO_ROOT
from .stats import ALPHA

# (summary key, what it is, unit, its reading): the reading is the summary key of the test's decision (the
# chapter's corrected test), "p" for a p-value read at ALPHA, or None for a plain number.
QUANTITIES = (
    ("teacher_accuracy", "teacher test accuracy", "%", None),
    ("teacher_train_accuracy", "teacher train accuracy", "%", None),
    ("control_accuracy", "control test accuracy", "%", None),
    ("kd_accuracy", "kd test accuracy", "%", None),
    ("rcd_accuracy", "rcd test accuracy", "%", None),
    ("agreement_gain_points", "kd - control agreement (points)", "pts", "significant_transfer"),
    ("agreement_share_closed", "share of the control's disagreement kd closes", "%", None),
    ("negative_transfer_p", "kd less teacher-like than control (one-sided p)", "p", "p"),
    ("neg_gain_points", "kd gain on the teacher's errors (points)", "pts", "neg_rise_significant"),
    ("pos_gain_points", "kd gain on the teacher's correct answers (points)", "pts", None),
    ("asymmetry_p", "errors transfer more than correct answers (p)", "p", "p"),
    ("kd_vs_rcd_agreement_p_by", "kd over rcd in agreement (p, BY-corrected)", "p", "kd_beats_rcd_agreement"),
    ("rcd_kd_equivalence_p", "rcd and kd accuracy equivalent (TOST p)", "p", "rcd_kd_equivalent"),
)
CONTENT = ("metrics.json", "outputs.npz")  # what a run is; provenance (times, device) differs on every retraining


def revision_folder(rev: str, folder: Path, dest: Path, repo: Path = REPO_ROOT) -> Path:
    """`folder` (inside `repo`) as git revision `rev` committed it, extracted under `dest`; its path there."""
    try:
        rel = Path(folder).resolve().relative_to(Path(repo).resolve()).as_posix()
    except ValueError:
        raise ConfigError(f"--compare-with {rev}: {folder} is not inside the repository {repo}, so no git revision "
                          "holds it; give a folder instead") from None
    done = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev, "--", rel], capture_output=True, check=False)
    if done.returncode:
        why = (done.stderr.decode(errors="replace").strip().splitlines() or ["git archive failed"])[-1]
        raise ConfigError(f"--compare-with {rev!r}: neither a folder nor a git revision holding {rel} ({why})")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(dest, filter="data")
    return Path(dest) / rel


def revision_commit(rev: str, repo: Path = REPO_ROOT) -> Optional[str]:
    """The commit a git revision names now (`HEAD~1` moves; the commit does not), or None."""
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", f"{rev}^{{commit}}"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def run_content(store, run_hash: str) -> Optional[tuple]:
    """What identifies a stored run's results: its manifest's checksums of CONTENT, else the files' bytes."""
    if not store.has(run_hash):
        return None
    manifest = store.manifest(run_hash)
    if manifest is not None:
        return tuple(manifest["files"].get(name, {}).get("sha256") for name in CONTENT)
    return tuple((store.path(run_hash) / name).read_bytes() if (store.path(run_hash) / name).is_file() else None
                 for name in CONTENT)


class AliasedStore:
    """A store read as if its runs of an older config were the runs asked for: `aliases` maps a wanted run's
    hash to the stored run of the same setup, arm, seed, KD weight and noise (`RunStore.stale_versions`), so
    that an entry whose config changed (a data option, a recipe) is compared with what the other store holds
    of it. Only what the tables read: has, problem, metrics, provenance, manifest, path."""

    def __init__(self, store, aliases: dict):
        self.store, self.aliases = store, {new: old["stored_hash"] for new, old in aliases.items()}
        self.fields = {new: old["fields"] for new, old in aliases.items()}

    def _h(self, run) -> str:
        h = run if isinstance(run, str) else run.hash
        return self.aliases.get(h, h)

    def has(self, run) -> bool:
        return self.store.has(self._h(run))

    def problem(self, run):
        return self.store.problem(self._h(run))

    def metrics(self, run) -> dict:
        return self.store.metrics(self._h(run))

    def provenance(self, run) -> dict:
        return self.store.provenance(self._h(run))

    def manifest(self, run):
        return self.store.manifest(self._h(run))

    def path(self, run) -> Path:
        return self.store.path(self._h(run))


def differing_runs(setup, a, b) -> list[str]:
    """Hashes of the setup's runs whose results differ between stores `a` and `b` (or are in one only)."""
    return [cfg.hash for cfg in setup.runs() if run_content(a, cfg.hash) != run_content(b, cfg.hash)]


def _reading(summary: dict, key: str, value: float) -> Optional[bool]:
    """Is the quantity's test significant in this summary (None: not computed there)?"""
    if math.isnan(value):
        return None
    if key == "p":
        return bool(value <= ALPHA)
    return bool(summary.get(key))


def _fmt(value: float, unit: str) -> str:
    if math.isnan(value):
        return "n/a"
    if unit == "%":
        return f"{100 * value:.2f} %"
    if unit == "pts":
        return f"{value:+.2f}"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def _fmt_diff(a: float, b: float, unit: str) -> str:
    """a - b in the quantity's unit (points for percentages); none for p-values."""
    if math.isnan(a) or math.isnan(b) or unit == "p":
        return ""
    d = a - b
    return f"{100 * d:+.2f} pts" if unit == "%" else f"{d:+.2f}"


def _agree_text(ra: Optional[bool], rb: Optional[bool]) -> str:
    if ra is None and rb is None:
        return "not computed"
    if ra is None or rb is None:
        return "computed in " + ("the other" if ra is None else "this store") + " only"
    if ra == rb:
        return "significant in both" if ra else "in neither"
    return "CHANGED: " + ("significant here only" if ra else "significant in the other only")


def entry_rows(sa: dict, sb: dict) -> list[dict]:
    """One entry under one reading: each quantity from store a ("this") and b ("other") and whether its test
    reads the same way in both (JSON-ready: NaN is None)."""
    rows = []
    for key, label, unit, reading in QUANTITIES:
        a, b = float(sa.get(key, float("nan"))), float(sb.get(key, float("nan")))
        rows.append({"key": key, "quantity": label, "unit": unit, "this": None if math.isnan(a) else a,
                     "other": None if math.isnan(b) else b,
                     "reading": "" if reading is None else _agree_text(_reading(sa, reading, a),
                                                                       _reading(sb, reading, b))})
    return rows


def rows_table(rows: list[dict], this: str = "this store", other: str = "other") -> pd.DataFrame:
    """`entry_rows` as text: each value in its unit, the difference (this - other) and the reading."""
    def value(v):
        return float("nan") if v is None else float(v)

    return pd.DataFrame([{"quantity": r["quantity"], this: _fmt(value(r["this"]), r["unit"]),
                          other: _fmt(value(r["other"]), r["unit"]),
                          f"{this} - {other}": _fmt_diff(value(r["this"]), value(r["other"]), r["unit"]),
                          "reading": r["reading"]} for r in rows])


def entry_table(sa: dict, sb: dict) -> pd.DataFrame:
    return rows_table(entry_rows(sa, sb))


def content_digest(setup, store) -> str:
    """The entry's runs' results as a store holds them: a recorded comparison is shown only while it matches."""
    h = hashlib.sha256()
    for cfg in setup.runs():
        h.update(repr((cfg.hash, run_content(store, cfg.hash))).encode())
    return h.hexdigest()[:16]


def is_current(record: dict, setup, store) -> bool:
    """Does a recorded comparison still describe the entry's stored runs?"""
    return record.get("content") == content_digest(setup, store)


def compared_text(record: dict) -> str:
    """What a record was compared with: the folder, or the git revision as given with its commit."""
    commit = record.get("commit")
    return f"{record['compared_with']} ({commit})" if commit and commit != record["compared_with"] else record["compared_with"]


def _side(setup, store) -> dict:
    """Where and by what code a store's runs of the entry were trained, and when (first and last day)."""
    provs = [store.provenance(cfg) for cfg in setup.runs() if store.has(cfg)]
    days = sorted(p["finished_at"][:10] for p in provs if p.get("finished_at"))
    return {"code_versions": sorted({p.get("code_version", "?") for p in provs}),
            "devices": sorted({p.get("device", "?") for p in provs}), "days": days[:1] + days[-1:]}


@dataclass
class StoreSummaries:
    summaries: list          # collect_summaries: every complete entry, one dict per reading
    missing: list            # incomplete entry ids

    def get(self, entry_id: str, w: float) -> Optional[dict]:
        return next((s for s in self.summaries if s["id"] == entry_id and s["kd_weight"] == w), None)

    def reading(self, w: float) -> list[dict]:
        return [s for s in self.summaries if s["kd_weight"] == w]


def verdict_changes(a: StoreSummaries, b: StoreSummaries, readings) -> pd.DataFrame:
    """Claim by claim under each reading: the verdict from each store's complete entries. An entry complete in one
    store only counts on both sides (a replica of one entry is compared with the whole shipped store), so a
    verdict changes only through the entries both stores hold."""
    from .book import claims

    rows = []
    for w in readings:
        sa, sb = a.reading(w), b.reading(w)
        ids_a, ids_b = {s["id"] for s in sa}, {s["id"] for s in sb}
        va = claims.verdicts(sa + [s for s in sb if s["id"] not in ids_a])
        vb = claims.verdicts(sb + [s for s in sa if s["id"] not in ids_b])
        for k, x, y in zip(va["claim"], va["verdict"], vb["verdict"]):
            rows.append({"reading": f"w = {w:g}", "claim": int(k), "this store": x, "other": y,
                         "same": "yes" if x == y else "CHANGED"})
    return pd.DataFrame(rows)


def compare_stores(study, scale: str, setups: list, store_a, store_b, log=print, against: str = "",
                   commit: Optional[str] = None, record_to=None) -> int:
    """Log the comparison of the plan entries `setups` ((id, SetupConfig)) between two stores; returns the number
    of (reading, claim) verdicts that differ. `against`: what store b is (a folder, or a git revision as given,
    with its `commit`). `record_to` (a ResultsFolder, that of store a): write each entry compared into its
    replications.json, which the entry's chapter shows."""
    from .book.evidence import BookEvidence
    from .book.setup_analysis import collect_summaries, plan_setups

    plan_runs = [cfg for _, cfg_setup in plan_setups(study, scale) for cfg in cfg_setup.runs()]
    # a run of another entry of the plan (the same setup at another size) is never an old version of this one's
    store_b = AliasedStore(store_b, store_b.stale_versions(plan_runs, exclude={c.hash for c in plan_runs}))
    sums = [StoreSummaries(*collect_summaries(study, scale, s)) for s in (store_a, store_b)]
    readings = BookEvidence(study=study, scales=[scale]).readings()
    changes = verdict_changes(*sums, readings)
    n_changed = int((changes["same"] != "yes").sum())
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        for entry_id, setup in setups:
            diff = differing_runs(setup, store_a, store_b)
            if not diff:
                stored = sum(store_a.has(cfg) for cfg in setup.runs())
                log(f"compare: {entry_id}: " + (f"its {stored} runs are the same in both stores" if stored == len(setup.runs())
                    else f"its {stored} stored runs are the same in both stores ({len(setup.runs()) - stored} in neither)"))
                continue
            log(f"compare: {entry_id}: {len(diff)} of its {len(setup.runs())} runs differ")
            moved = sorted({f for cfg in setup.runs() for f in store_b.fields.get(cfg.hash, [])})
            if moved:
                n = sum(cfg.hash in store_b.fields for cfg in setup.runs())
                log(f"  the other store holds {n} of them under another config (changed: {', '.join(moved)}): "
                    "compared as the same setup, arm, seed and KD weight")
            tables = {}
            for w in setup.kd_weights:
                sa, sb = sums[0].get(entry_id, w), sums[1].get(entry_id, w)
                if sa is None or sb is None:
                    where = " and ".join(n for n, s in (("this store", sa), ("the other", sb)) if s is None)
                    log(f"  w = {w:g}: incomplete in {where}; nothing to compare")
                    continue
                log(f"  w = {w:g} ({sa['n_seeds']} and {sb['n_seeds']} seeds):")
                tables[f"{w:g}"] = entry_rows(sa, sb)
                log(rows_table(tables[f"{w:g}"]).to_string(index=False))
            if record_to is not None and len(tables) == len(setup.kd_weights):
                record_to.write_replication(entry_id, {
                    "compared_with": against, "commit": commit, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "runs": len(setup.runs()), "differing": len(diff), "config_changes": moved,
                    "content": content_digest(setup, store_a), "this": _side(setup, store_a),
                    "other": _side(setup, store_b), "readings": tables,
                    "verdicts": {"scale": scale, "changed": n_changed, "compared": len(changes),
                                 "rows": changes.to_dict("records")}})
                log(f"  recorded in {record_to.root / record_to.REPLICATIONS}")
            elif record_to is not None:
                log("  not recorded: the entry is incomplete in one of the stores")
        only = [sorted({s["id"] for s in x.summaries} - {s["id"] for s in y.summaries}) for x, y in (sums, sums[::-1])]
        for name, ids in zip(("this store", "the other"), only):
            if ids:
                log(f"compare: complete in {name} only (its runs count on both sides of the verdicts): {', '.join(ids)}")
        neither = sorted(set(sums[0].missing) & set(sums[1].missing))
        if neither:
            log(f"compare: complete in neither (left out of the verdicts): {', '.join(neither)}")
        log(f"compare: the claims' verdicts at the {scale} scale, from the complete entries: "
            + ("identical, claim by claim" if not n_changed else f"{n_changed} of {len(changes)} differ"))
        log(changes.to_string(index=False))
    return n_changed
