"""The evidence a whole book rests on: per-setup summaries of the book's own scale and of the shipped
scales it shows (e.g. the mid scale's runs on the paper's datasets), under each reading of the KD weight. The summary and
claims chapters read it; nothing here trains."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from .setup_analysis import collect_summaries, plan_setups
from .formatting import entry_link, fmt_p
from .claims import num
from ..results import ResultsFolder
from .frames import damaged_runs, repair_command, run_table, stored_count
from ..studyfile import Study, load_study



@dataclass
class BookEvidence:
    study: Study
    scales: list                                       # the book's own scale first, then shipped ones
    summaries: dict = field(default_factory=dict)      # scale -> list of summaries (every reading)
    missing: dict = field(default_factory=dict)        # scale -> incomplete entry ids
    absent: list = field(default_factory=list)         # scales with no store at all
    stores: dict = field(default_factory=dict)

    @classmethod
    def load(cls, study_file: Optional[str], scale: str, results_dir: Optional[str], shipped=()) -> "BookEvidence":
        study = load_study(study_file)
        ev = cls(study=study, scales=[scale] + [s for s in (shipped or []) if s != scale])
        for s in ev.scales:
            store = ResultsFolder.of(study, s, results_dir if s == scale else None).existing_store()
            if store is None:
                ev.absent.append(s)
                continue
            ev.stores[s] = store
            ev.summaries[s], ev.missing[s] = collect_summaries(study, s, store)
        return ev

    # -------------------------------------------------------------------------- selections
    def label(self, scale: str) -> str:
        return self.study.scale_label(scale)

    def frame(self, scale: str, kd_weight: Optional[float] = None) -> pd.DataFrame:
        """Summaries of one scale under one reading (None: each entry's main KD weight)."""
        rows = [s for s in self.summaries.get(scale, [])
                if (s["kd_weight"] == s["main_kd_weight"] if kd_weight is None else s["kd_weight"] == kd_weight)]
        return pd.DataFrame(rows)

    def main_tables(self) -> list[tuple[str, pd.DataFrame]]:
        return [(self.label(s), f) for s in self.summaries if len(f := self.frame(s))]

    def readings(self) -> tuple:
        """The readings of the paper's alpha, from the study file: `defaults: kd_weight` (the main one) first,
        then `defaults: kd_weight_variants`."""
        d = self.study.defaults
        if "kd_weight" not in d:
            raise ValueError("the study file's `defaults:` names no kd_weight, so the book has no main reading of alpha")
        main = float(d["kd_weight"])
        return (main,) + tuple(w for w in dict.fromkeys(float(v) for v in d.get("kd_weight_variants") or ()) if w != main)

    def other_readings(self) -> tuple:
        return self.readings()[1:]

    def reading_tables(self, w: float) -> list[tuple[str, pd.DataFrame]]:
        return [(f"{self.label(s)}, KD weight {w:g}", f) for s in self.summaries if len(f := self.frame(s, w))]

    def all_main(self) -> pd.DataFrame:
        frames = []
        for s in self.summaries:
            f = self.frame(s)
            if len(f):
                frames.append(f.assign(id=f["id"] if s == self.scales[0] else s + ": " + f["id"]))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def claim_columns(self) -> dict[str, list[dict]]:
        """Bodies of evidence for the claims page: each scale under each reading of alpha. The claims are about
        the paper's KD (Hinton's): entries distilled with another objective (the DKD check) are left out."""
        cols = {}
        for s in self.summaries:
            for w in self.readings():
                rows = [x for x in self.summaries[s] if x["kd_weight"] == w and x["objective"] == "hinton"]
                if rows:
                    cols[f"{s}, w={w:g}"] = rows
        return cols

    def weight_curve_entry(self) -> Optional[tuple[str, str, pd.DataFrame]]:
        """(scale, entry id, results) of the first complete entry that ran three or more KD weights."""
        for s in self.summaries:
            for entry_id, cfg in plan_setups(self.study, s):
                if len(cfg.kd_weights) >= 3 and entry_id not in self.missing.get(s, []):
                    return s, entry_id, run_table(self.stores[s], cfg)
        return None

    def weight_curve_results(self) -> Optional[pd.DataFrame]:
        found = self.weight_curve_entry()
        return found[2] if found else None

    # -------------------------------------------------------------------------- text and tables
    def status(self) -> str:
        lines = []
        for s in self.scales:
            if s in self.absent:
                lines.append(f"- **{self.label(s)}**: no runs here (never run on this machine and not shipped).")
                continue
            n = len(self.frame(s))
            pending = set(self.study.pending(s))
            miss = [m for m in self.missing.get(s, []) if m not in pending]
            waiting = [m for m in self.missing.get(s, []) if m in pending]
            store, setups = self.stores.get(s), dict(plan_setups(self.study, s))
            never = [m for m in miss if stored_count(store, setups[m]) == 0]
            damaged = {m: d for m in miss if store is not None and (d := damaged_runs(store, setups[m]))}
            miss = [m for m in miss if m not in never and m not in damaged]
            lines.append(f"- **{self.label(s)}**: {n} entr{'y' if n == 1 else 'ies'} with complete results"
                         + (f"; incomplete and left out: {', '.join(miss)}" if miss else "")
                         + (f"; not run here ({len(never)}): {', '.join(never)}" if never else "")
                         + ("; still training (pending in study.yaml; shown once complete): "
                            + ", ".join(f"{m} ({stored_count(store, setups[m])} of {len(setups[m].runs())} runs stored)"
                                        for m in waiting) if waiting else "") + ".")
            for m, d in damaged.items():
                lines.append(f"  - **{m}: {len(d)} damaged run(s) left out** (the entry is left out of every table): "
                             + "; ".join(f"{k}: {v}" for k, v in list(d.items())[:3]) + (" ..." if len(d) > 3 else "")
                             + f". Repair: `{repair_command(s, m)}`")
        return "\n".join(lines)

    @staticmethod
    def overview(summary: pd.DataFrame):
        """One row per entry, narrow enough for the text column: paired numbers share a cell, the seed count
        is a column only where it varies (else it is named in the header), headers wrap."""
        seeds = summary["n_seeds"].unique()
        t = pd.DataFrame({"setup": _setup_links(summary), "modality": summary["modality"]})
        if len(seeds) > 1:
            t["seeds"] = summary["n_seeds"]
        t["teacher acc test / train (%)"] = [f"{100 * a:.1f} / {100 * b:.1f}" for a, b in
                                             zip(summary["teacher_accuracy"], summary["teacher_train_accuracy"])]
        t["teacher errors"] = summary["teacher_errors"]
        t["control / kd / rcd acc (%)"] = [f"{100 * c:.1f} / {100 * k:.1f} / {100 * r:.1f}" for c, k, r in
                                           zip(summary["control_accuracy"], summary["kd_accuracy"], summary["rcd_accuracy"])]
        # the gain beside the share of the room the control leaves that it closes: a weak teacher leaves much
        # room, so the points alone track the teacher's accuracy (see the chapter on the regime)
        t["agreement gain, points (share of headroom)"] = [
            f"{num(g, '+.2f')} ({'n/a' if x != x else num(100 * x, '.0f') + ' %'})"
            for g, x in zip(summary["agreement_gain_points"], summary["agreement_share_closed"])]
        t["p (BY)"] = summary["agreement_p_by"]
        t["significant transfer" + (f" ({seeds[0]} seeds)" if len(seeds) == 1 else "")] = np.where(
            summary["significant_transfer"], "yes", np.where(summary["transfer_testable"], "no", "not testable"))
        return (t.style.format({"teacher errors": "{:,.0f}", "p (BY)": fmt_p})
                .hide(axis="index")
                .set_properties(subset=["teacher acc test / train (%)", "control / kd / rcd acc (%)"],
                                **{"white-space": "nowrap"}))

    @staticmethod
    def transfer(summary: pd.DataFrame):
        """Transfer per entry: paired A+ / A- numbers share a cell; n/a where a share is undefined."""
        def pair(a, b, fmt):
            return [" / ".join("n/a" if v != v else fmt.format(v) for v in ab) for ab in zip(a, b)]

        t = pd.DataFrame({
            "setup": _setup_links(summary), "significant transfer": np.where(
                summary["significant_transfer"], "yes", np.where(summary["transfer_testable"], "no", "not testable")),
            "ΔA+ / ΔA- (points)": pair(summary["pos_gain_points"], summary["neg_gain_points"], "{:+.2f}"),
            "headroom A+ / A- (%)": pair(100 * summary["pos_headroom"], 100 * summary["neg_headroom"], "{:.1f}"),
            "share closed A+ / A- (seeds)": [f"{s} ({n})" for s, n in zip(pair(summary["pos_share_closed"], summary["neg_share_closed"], "{:.2f}"),
                                                                         summary["asymmetry_seeds"])],
            "A- > A+ share, p": summary["asymmetry_p"],
            "rcd - kd acc (points)": 100 * summary["rcd_kd_accuracy_diff"],
            "rcd ≈ kd, TOST p": summary["rcd_kd_equivalence_p"],
        })
        return (t.style.format({"A- > A+ share, p": fmt_p, "rcd - kd acc (points)": "{:+.2f}", "rcd ≈ kd, TOST p": fmt_p})
                .hide(axis="index")
                .set_properties(subset=["ΔA+ / ΔA- (points)", "headroom A+ / A- (%)", "share closed A+ / A- (seeds)"],
                                **{"white-space": "nowrap"}))


def _setup_links(summary: pd.DataFrame) -> list[str]:
    """Each entry's id as a link to its chapter (summaries carry their scale)."""
    return [entry_link(s, i) for s, i in zip(summary["scale"], summary["id"])]
