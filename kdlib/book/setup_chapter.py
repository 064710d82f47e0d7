"""What a setup chapter shows, gathered once from the study file and the run store, so the notebook reads
as prose plus one call per table or figure. This module reads; it imports no training code. A chapter
asked to fill its own gaps (`train_missing`, a papermill rerun with new parameters) calls
`kdlib.executors.fill_missing` itself before it reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd

from .setup_analysis import (arm_table, compact_tests, convergence, fmt_mean_sem, negative_transfer_test, primary_family,
                             readings_table, setup_tests, transfer_table)
from .frames import damaged_runs, main_arms, repair_command, run_table
from .notebooks import PARAMETERS, setup_overrides
from .run_costs import device_kind
from ..config import SetupConfig
from ..metrics import debiased_cka, linear_cka, mi_plugin_bias
from ..results import ResultsFolder
from ..stats import ALPHA, power_limits
from ..store import RunStore
from ..studyfile import load_study


@dataclass(frozen=True)
class ChapterSetup:
    """A setup chapter's parameters resolved: the setup configuration, its plan entry and results folder."""

    cfg: SetupConfig
    entry_id: str
    results: ResultsFolder
    overrides: dict = field(default_factory=dict)  # the plan entry's parameters (what a rerun passes again)

    @classmethod
    def from_parameters(cls, namespace: dict) -> "ChapterSetup":
        params = {k: namespace[k] for k in PARAMETERS["setup"] if k in namespace}
        study = load_study(params.get("study_file"))
        overrides = setup_overrides(params)
        cfg = study.setup(params.get("setup"), params.get("scale"), **overrides)
        return cls(cfg, params.get("entry_id") or cfg.name, ResultsFolder.of(study, params.get("scale"),
                                                                            params.get("results_dir")), overrides)


@dataclass
class SetupView:
    cfg: SetupConfig
    entry_id: str
    results_folder: ResultsFolder
    store: RunStore
    results: pd.DataFrame
    missing: list = field(default_factory=list)   # labels of runs not in the store
    overrides: dict = field(default_factory=dict) # the chapter's setup parameters, as a rerun passes them
    damaged: dict = field(default_factory=dict)   # label -> why: stored runs that do not vouch for themselves
    failed: dict = field(default_factory=dict)    # label -> error of the last training phase
    trained_now: int = 0
    _tests: dict = field(default_factory=dict, repr=False)       # KD weight -> tests (computed once)
    _provenance: dict = field(default_factory=dict, repr=False)  # hash -> provenance.json (read once)

    @classmethod
    def read(cls, chapter: ChapterSetup, trained_now: int = 0) -> "SetupView":
        """Read the chapter's runs from its results folder (`trained_now`: how many the chapter trained). What it
        reads of the folder must be in `reuse.entry_digest`, or a build could reuse a page that no longer holds."""
        cfg, folder = chapter.cfg, chapter.results
        store = folder.store()
        missing = [r.label for r in store.missing(cfg)]
        return cls(cfg=cfg, entry_id=chapter.entry_id, results_folder=folder, store=store, results=run_table(store, cfg),
                   missing=missing, damaged=damaged_runs(store, cfg), overrides=dict(chapter.overrides), failed={k: v for k, v in folder.failures().items() if k in missing},
                   trained_now=trained_now)

    @classmethod
    def from_parameters(cls, namespace: dict) -> "SetupView":
        """Resolve the chapter's parameters and read (never train)."""
        return cls.read(ChapterSetup.from_parameters(namespace))

    # ------------------------------------------------------------------ reading
    @property
    def main(self) -> pd.DataFrame:
        return main_arms(self.results)

    @property
    def main_weight_runs(self) -> pd.DataFrame:
        """Every run at the main KD weight, all RCD noises included (teacher and control have no weight)."""
        r = self.results
        return r[r.kd_weight.isna() | (r.kd_weight == self.cfg.kd_weight)]

    def tests(self, kd_weight: Optional[float] = None) -> pd.DataFrame:
        """The paired tests under one reading (default: the main KD weight), computed once per reading."""
        w = self.cfg.kd_weight if kd_weight is None else kd_weight
        if w not in self._tests:
            self._tests[w] = setup_tests(main_arms(self.results, w), primary_family(self.cfg))
        return self._tests[w]

    def provenance(self, run_hash: str) -> dict:
        if run_hash not in self._provenance:
            self._provenance[run_hash] = self.store.provenance(run_hash)
        return self._provenance[run_hash]

    def replication(self) -> tuple[Optional[dict], str]:
        """The comparison of this entry's runs with another store's (`--compare-with OTHER --record`), where it
        still describes the stored runs; else None and why not ("" where none was recorded)."""
        from ..compare import compared_text, is_current

        rec = self.results_folder.replications().get(self.entry_id)
        if not rec:
            return None, ""
        if not is_current(rec, self.cfg, self.store):
            return None, (f"A comparison recorded for this entry ({rec['recorded'][:10]}, with "
                          f"`{compared_text(rec)}`) describes runs since replaced, so it is not shown.")
        return rec, ""

    def replication_text(self, rec: dict) -> str:
        """What a recorded comparison compared, and the verdicts' side of it, as one paragraph."""
        from ..compare import compared_text

        def side(x):
            days = " to ".join(dict.fromkeys(x.get("days") or [])) or "?"
            return (f"code {', '.join(f'`{v}`' for v in x['code_versions'])} on {' / '.join(f'`{d}`' for d in x['devices'])}, "
                    f"trained {days}")

        v = rec["verdicts"]
        changed = [r for r in v["rows"] if r["same"] != "yes"]
        verdicts = ("identical, claim by claim, under every reading" if not changed else
                    f"**{len(changed)} of {v['compared']} differ**: " + "; ".join(
                        f"claim {r['claim']} at {r['reading']}: {r['other']} with the compared runs, {r['this store']} "
                        "with these" for r in changed))
        moved = (f" The compared runs have another config (changed: {', '.join(rec['config_changes'])}); each stands "
                 "in for the run of the same arm, seed and KD weight." if rec.get("config_changes") else "")
        return (f"These {rec['runs']} runs ({side(rec['this'])}) were compared with those of `{compared_text(rec)}` "
                f"({side(rec['other'])}); {rec['differing']} of them differ.{moved} Runs trained again differ in every "
                "trajectory where the kernels, the code or the data differ, so what matters is whether the readings "
                "agree: each quantity below from both, and whether each test is significant in both, in neither, or in "
                f"one only (CHANGED). The claims' verdicts at the {v['scale']} scale, computed from each store: "
                f"{verdicts}. Recorded {rec['recorded'][:10]} with `python -m kdlib.driver --scale {self.cfg.scale} "
                f"--only {self.entry_id} --compare-with {rec['compared_with']} --record`.")

    def replication_tables(self, rec: dict) -> dict:
        """KD weight -> the quantities of both stores side by side."""
        from ..compare import rows_table

        return {w: rows_table(rows, this="these runs", other="compared runs") for w, rows in rec["readings"].items()}

    def epoch_logs(self) -> dict:
        return {h: self.provenance(h).get("epochs", []) for h in self.results["hash"]}

    # ------------------------------------------------------------------ text
    def description(self) -> str:
        c = self.cfg
        student = f"`{c.student.name}` {c.student.args or ''}" if c.kind == "standard" else \
            "the teacher's architecture, from the teacher's initial weights"
        rows = [("setup", f"`{c.name}` ({'self-distillation' if c.kind == 'self' else 'standard distillation'}), "
                          f"scale `{c.scale}`"),
                ("modality / dataset", f"{c.modality} / `{c.dataset}` {c.data_args or ''}"),
                ("teacher", f"`{c.teacher.name}` {c.teacher.args or ''}"), ("student", student),
                ("distillation", f"`{c.variant}` {c.variant_args or ''}, KD objective `{c.objective}` "
                                 f"{c.objective_args or ''}, KD weight w = "
                                 f"{', '.join(f'{w:g}' for w in c.kd_weights)} (main first), T = {c.temperature:g}"),
                ("RCD noise", f"`{c.rcd_noise}`" + (f" (side by side: {', '.join(c.rcd_variants)})" if c.rcd_variants else "")),
                ("training recipe", (f"`{c.recipe}`: " if c.recipe else "") + ", ".join(f"{k} {v}" for k, v in c.train.items())),
                ("seeds", f"{c.n_seeds}")]
        if c.backdoor:
            b = c.backdoor
            trig = (f"token {b.get('token', 'the rarest word')} at position {b.get('position', 0)}" if "token" in b
                    or c.modality == "text" else f"a {b.get('patch', 3)}x{b.get('patch', 3)} corner patch")
            rows.append(("backdoor", f"target class {b['target']}, {b['poison_fraction']:.0%} of the teacher's "
                                     f"other-class training examples poisoned with {trig}; students train on clean data"))
        table = "| what | value |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)
        prov = "\n".join(f"| {k} | {v} |" for k, v in (c.provenance or {}).items())
        return (f"{c.description}{self.objective_note()}\n\n{table}\n\n**Which choices are the paper's.** The paper's body "
                "(hyperparameters, tables) is not available to this project; everything marked *reconstructed* is "
                "our own protocol, and every value above is a parameter (see [How to read this book](../../reading.md) "
                "for rerunning this chapter with other values).\n\n| choice | provenance |\n|---|---|\n"
                f"{prov}\n| KD weight, T, RCD noise, seeds | reconstructed (alpha = 0.9 is named by public summaries; "
                "both readings of it are run) |\n")

    def objective_note(self) -> str:
        """For an entry distilled with another KD objective than the paper's (Hinton's): what kd and rcd minimise
        here, and that the entry is not part of the claim verdicts."""
        c = self.cfg
        if c.objective == "hinton":
            return ""
        name = c.objective.upper()
        return (f"\n\n**KD ({name}).** In this entry kd and rcd minimise (1 - w) CE + w times the KD objective "
                f"`{c.objective}` of `kdlib.objectives` with {c.objective_args}, in place of Hinton's "
                f"T² KL: **kd** below is KD ({name}) with the teacher's logits, **rcd** the same objective with the RCD "
                "noise in their place; teachers and controls do not depend on the objective, so they are the same runs "
                "as in this setup's Hinton entries. "
                f"It is the {name} check of the paper's controls, not part of the claim verdicts, which are about the "
                "paper's Hinton KD.")

    def status(self) -> str:
        r, lines = self.results, []
        if len(r) and self.cfg.scale == "paper" and not any(device_kind(d) == "cuda" for d in r["device"]):
            lines.append("**Computed on the CPU.** This paper-scale entry ran unchanged (the paper plan's own "
                         "config and recipe) on the project's 2-core CPU machine, not on a GPU: its numbers are the "
                         "paper scale's, only slower to get.")
        if len(r):
            devices = " / ".join(sorted(r["device"].unique()))  # a device names itself with commas
            provs = [self.provenance(h) for h in r["hash"]]
            dates = sorted(p.get("finished_at", "")[:10] for p in provs if p.get("finished_at"))
            sources = sorted({p.get("data", {}).get("source", "?") for p in provs})
            # runs stored before the precision was recorded trained in fp32 on the CPU, bf16 autocast on CUDA
            arith = sorted({p.get("precision") or ("bf16 autocast (CUDA)" if device_kind(p.get("device", "")) == "cuda"
                                                   else "fp32 (CPU)") for p in provs})
            when = f", trained {dates[0]}" + (f" to {dates[-1]}" if dates[-1] != dates[0] else "") if dates else ""
            lines.append(f"{len(r)} runs from `{self.store.root}`, {r['seconds'].sum():.1f} s of training in total on "
                         f"{devices}{when}; code version(s) {', '.join(f'`{v}`' for v in r['code_version'].unique())}; "
                         f"data: {'; '.join(sources)}; arithmetic: {'; '.join(arith)}."
                         + (f" This chapter trained {self.trained_now} of them itself." if self.trained_now else ""))
        # the phases during which one of its stored runs finished (not those of runs since replaced)
        phases = [] if self.trained_now or not len(r) else self.results_folder.entry_phases(
            self.entry_id, [self.provenance(h).get("finished_at") for h in r["hash"]])
        if phases:  # one line here; each phase's operations log (interruptions, shared cores) is in the appendix
            mine = sum((t.get("entries", {}).get(self.entry_id) or {}).get("trained", 0) for t in phases)
            machines = sorted({t["machine"].split(",")[0] + ", " + t["machine"].split(",")[1].strip() for t in phases})
            noted = sum(bool(t.get("note") or t.get("interrupted")) for t in phases)
            lines.append(f"Trained in {len(phases)} phase{'s' if len(phases) > 1 else ''} ({mine} of this entry's runs), "
                         f"{phases[0]['started'][:10]} to {phases[-1]['finished'][:10]}, on {'; '.join(machines)}, "
                         f"{sum(t['wall_seconds'] for t in phases) / 60:.1f} min of wall time in all, code "
                         + ", ".join(f"`{v}`" for v in dict.fromkeys(t["code_version"] for t in phases)) + "."
                         + ((" The phase carries an operations note" if len(phases) == 1 else
                             f" {noted} of the phases carry an operations note")
                            + " (stopped early, or sharing the cores): the appendix's compute ledger gives it."
                            if noted else ""))
        dirty = self.dirty_note()
        if dirty:
            lines.append(dirty)
        if self.damaged:
            lines.append(f"**{len(self.damaged)} stored run(s) are damaged** and are left out of every table and test "
                         f"below: " + "; ".join(f"{k}: {v}" for k, v in list(self.damaged.items())[:6])
                         + (" ..." if len(self.damaged) > 6 else "")
                         + f". Repair: `{repair_command(self.cfg.scale, self.entry_id)}`")
        if self.missing:
            lines.append(f"**{len(self.missing)} of {len(self.cfg.runs())} runs are missing** and are left out of "
                         "every table and test below: " + ", ".join(self.missing[:12])
                         + (" ..." if len(self.missing) > 12 else ""))
        for label, err in self.failed.items():
            lines.append(f"- failed in the last training phase: `{label}`: {err.strip().splitlines()[-1] if err else ''}")
        return "\n\n".join(lines)

    def feature_rows(self) -> int:
        """How many test rows of penultimate features a run of this entry stores (the CKA subsample: 512, or the
        whole test set where it is smaller)."""
        r = self.results
        if r.empty:
            return 0
        feats = self.store.features(r["hash"].iloc[0])
        return 0 if feats is None else len(feats)

    def runs_csv(self) -> pd.DataFrame:
        """Every run of the entry, one row each: entry, arm, seed, reading (KD weight), RCD noise, hash and every
        metric (the table a reader takes away)."""
        r = self.results
        if r.empty:
            return r
        first = ["arm", "seed", "kd_weight", "rcd_noise", "hash", "teacher_hash"]
        rest = [c for c in r.columns if c not in first + ["setup", "is_main"]]
        return r[first + rest].assign(entry=self.entry_id)[["entry"] + first + rest]

    def rerun_commands(self) -> tuple[str, str]:
        """(the kdlib.chapters command, its papermill equivalent) that execute this chapter again with its
        parameters: runs in the store are reused, missing ones trained."""
        import yaml

        def value(v) -> str:
            text = yaml.safe_dump(v, default_flow_style=True, width=1000).strip()
            text = text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()
            return f"'{text}'" if any(ch in text for ch in " [{:,'") else text

        c = self.cfg
        base = [("setup", c.name), ("scale", c.scale)] + ([("entry_id", self.entry_id)] if self.entry_id != c.name else [])
        params = base + sorted(self.overrides.items())
        chapters = (f"python -m kdlib.chapters setup {self.entry_id}.ipynb "
                    + " ".join(f"-p {k} {value(v)}" for k, v in params))
        simple = [(k, v) for k, v in params if isinstance(v, (str, int, float, bool))]
        structured = [(k, v) for k, v in params if not isinstance(v, (str, int, float, bool))]
        papermill = ("jupytext --to ipynb notebooks/setup.py && papermill notebooks/setup.ipynb "
                     f"{self.entry_id}.ipynb " + " ".join(f"-p {k} {value(v)}" for k, v in simple)
                     + "".join(f" -y '{k}: {yaml.safe_dump(v, default_flow_style=True, width=1000).strip()}'"
                               for k, v in structured))
        return chapters, papermill

    def dirty_note(self) -> str:
        """Runs trained from a work tree with uncommitted changes: how many, and what the changes were where
        their provenance records them (runs trained before it did record only the `-dirty` version)."""
        r = self.results
        if r.empty:
            return ""
        dirty = r[r["code_version"].astype(str).str.endswith("-dirty")]
        if dirty.empty:
            return ""
        files, unrecorded = set(), 0
        for h in dirty["hash"]:
            changes = self.provenance(h).get("tree_changes")
            if changes:
                files |= set(changes.get("changed_files", [])) | set(changes.get("untracked_files", []))
            else:
                unrecorded += 1
        code = sorted(f for f in files if not f.startswith("results/"))
        return (f"**{len(dirty)} of {len(r)} runs were trained from a work tree with uncommitted changes** (code "
                f"version{'s' if dirty['code_version'].nunique() > 1 else ''} "
                + ", ".join(f"`{v}`" for v in dirty["code_version"].unique()) + ")"
                + (f"; the changes recorded in their provenance touch {', '.join(f'`{f}`' for f in code)}" if code else "")
                + ("; their recorded changes touch no code, only the run store under `results/` that the training "
                   "phase wrote into (changes there no longer mark a version dirty)" if files and not code else "")
                + (f"; {unrecorded} of them were trained before runs recorded what the changes were" if unrecorded else "")
                + (". Their numbers come from code that is not in the history as such." if code or unrecorded else "."))

    def power_note(self) -> str:
        tests = self.tests()
        n = int(tests["n"].min()) if len(tests) else 0
        m_primary = int((tests["family"] == "primary").sum())
        m_expl = int((tests["family"] == "exploratory").sum())
        lp, le = power_limits(n, max(1, m_primary)), power_limits(n, max(1, m_expl))
        return (f"With **{n} seeds** the smallest one-sided p of an exact signed-rank test is 2^-{n} = {lp['min_p']:.2g} "
                f"(fewer where differences are zero or tied; each row's own limit is in the full table). "
                f"**Primary family** ({m_primary} tests, corrected on its own): a test that reaches the minimum alone "
                f"ends at p (BY) = {lp['min_p_by_lone_test']:.2g}, so "
                + ("it can be significant." if lp["lone_test_can_survive"] else "**no test can be significant at this seed count**.")
                + f" **Exploratory family** ({m_expl} tests): a lone test ends at {le['min_p_by_lone_test']:.2g}"
                + (", so only consistent effects can survive." if not le["lone_test_can_survive"] else ".")
                + f" Significance at alpha = {ALPHA}."
                + self._unreachable_note(tests))

    def negative_transfer_note(self) -> str:
        """Per KD weight: is kd significantly *less* teacher-like than the control (agreement, one-sided exact
        signed-rank test the other way, paired by seed)? Named where it is, whatever the ceiling rule says; the
        claims page corrects it over the setups of a column."""
        lines = []
        for w in self.cfg.kd_weights:
            res = negative_transfer_test(main_arms(self.results, w))
            kd, ctrl = res["kd"], res["control"]
            if res["p"] <= ALPHA:
                lower = int((kd < ctrl).sum())
                lines.append(f"**Negative transfer at w = {w:g}.** kd agrees with its teacher *less* than the control "
                             f"does: {100 * (kd.mean() - ctrl.mean()):+.2f} points, lower in {lower} of {len(kd)} seeds "
                             f"(one-sided signed-rank test kd < control, p {res['p']:.2g}, uncorrected here; the claims "
                             "page corrects it over the setups).")
        return "\n\n".join(lines)

    @staticmethod
    def _unreachable_note(tests: pd.DataFrame) -> str:
        """The primary tests whose non-zero differences cannot pass the family's correction (claims that rest
        on them are "not testable" here)."""
        t = tests[(tests["family"] == "primary") & ~tests["reachable"].astype(bool)] if len(tests) else tests
        if not len(t):
            return ""
        return (" **Primary tests that cannot be significant here** (too few non-zero differences for the "
                "correction): " + "; ".join(f"{c} {m} ({nz} of {n} differences non-zero, smallest p {mp:.2g})"
                                            for c, m, nz, n, mp in zip(t["comparison"], t["metric"], t["n_nonzero"],
                                                                       t["n"], t["min_p"])) + ".")

    # ------------------------------------------------------------------ tables
    def arm_table(self) -> pd.DataFrame:
        return arm_table(self.main)

    def convergence(self) -> pd.DataFrame:
        """Per arm: runs, runs whose loss flattened, train accuracy (%), final training loss, as text."""
        c = convergence(self.main, self.epoch_logs())
        fmt = {"runs": "{:.0f}", "loss_flattened": "{:.0f}", "train_accuracy": "{:.2f}", "final_loss": "{:.4g}"}
        return pd.DataFrame({arm: [fmt[k].format(c.loc[k, arm]) for k in c.index] for arm in c.columns}, index=c.index)

    def compact_tests(self, family: str) -> pd.DataFrame:
        t = compact_tests(self.tests())
        return t[t["family"] == family].drop(columns="family")

    def full_tests(self) -> pd.DataFrame:
        cols = ["family", "comparison", "metric", "n", "n_nonzero", "n_excluded", "mean_a", "sem_a", "mean_b", "sem_b",
                "mean_diff", "W", "p", "p_by", "rbc", "significant", "min_p", "reachable"]
        t = self.tests()
        return t[[c for c in cols if c in t]]

    def transfer_table(self) -> pd.DataFrame:
        return transfer_table(self.main, self.cfg.min_disagreements)

    def readings_table(self) -> pd.DataFrame:
        return readings_table(self.results, self.cfg, {w: self.tests(w) for w in self.cfg.kd_weights})

    def similarity_table(self) -> pd.DataFrame:
        """Per student arm (main KD weight and noise): the stored linear CKA beside the debiased one, computed
        here from the stored float16 features of each run and its teacher, and the plug-in MI beside its
        expected value for two unrelated models, (K_S - 1)(K_T - 1) / 2N nats (`metrics.mi_plugin_bias`)."""
        r, rows, teacher_feats = self.main, {}, {}
        teacher_hashes = sorted(r.loc[r.arm == "teacher", "hash"])
        if not teacher_hashes:
            return pd.DataFrame()
        logits = self.store.test_logits(teacher_hashes[0])
        bias = mi_plugin_bias(logits.shape[1], logits.shape[1], len(logits))
        for arm in ("control", "kd", "rcd"):
            d = r[r.arm == arm]
            if d.empty:
                continue
            debiased = []
            for h, th in zip(d["hash"], d["teacher_hash"]):
                if th not in teacher_feats:
                    teacher_feats[th] = self.store.features(th)
                fs, ft = self.store.features(h), teacher_feats[th]
                debiased.append(debiased_cka(fs, ft) if fs is not None and ft is not None else float("nan"))
            rows[arm] = {"cka": fmt_mean_sem(d["cka"]) if "cka" in d else "n/a",
                         "cka_debiased": fmt_mean_sem(debiased), "mi": fmt_mean_sem(d["mi"]) if "mi" in d else "n/a",
                         "mi_plugin_bias": f"{bias:.3g}"}
        rows.update(self.cka_baselines(teacher_feats))
        return pd.DataFrame(rows)

    def cka_baselines(self, teacher_feats: dict) -> dict:
        """The baselines a CKA value is read against, measured on the stored features: two teachers of different
        seeds (what two independently trained models share) and the controls' features with their rows permuted
        (no correspondence at all: the estimator's floor on this many rows)."""
        r = self.main
        teachers = r[r.arm == "teacher"].sort_values("seed")["hash"].tolist()
        feats = [teacher_feats[h] if h in teacher_feats else self.store.features(h) for h in teachers]
        pairs = [(a, b) for a, b in zip(feats, feats[1:]) if a is not None and b is not None]
        out = {}
        if pairs:
            out["teacher vs another seed's teacher"] = {
                "cka": fmt_mean_sem([linear_cka(a, b) for a, b in pairs]),
                "cka_debiased": fmt_mean_sem([debiased_cka(a, b) for a, b in pairs]), "mi": "", "mi_plugin_bias": ""}
        ctrl = r[r.arm == "control"]
        null, null_db = [], []
        for h, th in zip(ctrl["hash"], ctrl["teacher_hash"]):
            fs, ft = self.store.features(h), teacher_feats.get(th)
            if fs is None or ft is None:
                continue
            shuffled = fs[np.random.default_rng(0).permutation(len(fs))]
            null.append(linear_cka(shuffled, ft))
            null_db.append(debiased_cka(shuffled, ft))
        if null:
            out["control, rows permuted (null)"] = {"cka": fmt_mean_sem(null), "cka_debiased": fmt_mean_sem(null_db),
                                                    "mi": "", "mi_plugin_bias": ""}
        return out

    def rcd_variants_table(self) -> pd.DataFrame:
        r = self.main_weight_runs
        r = r[r.arm.isin(["control", "kd", "rcd"])]
        r = r.assign(rcd_noise=r.rcd_noise.fillna("-"))
        cols = ["accuracy", "agreement", "pos_agreement", "neg_agreement"]
        out = 100 * r.groupby(["arm", "rcd_noise"])[cols].mean()
        out["generalisation_gap"] = r.groupby(["arm", "rcd_noise"])["generalisation_gap"].mean()
        return out


def chapter_seconds(study_file, book_scale, scale: str, entry_id: str, results_dir=None):
    """Seconds this chapter took to execute, from the driver log in the results folder of the book's scale
    (the previous build's, which times every chapter of the book, shipped ones included; a chapter that
    build reused has the time it took when it was executed), or None."""
    import json

    book = book_scale or scale
    folder = ResultsFolder.of(load_study(study_file), book, results_dir if book == scale else None)
    path = folder.root / ResultsFolder.DRIVER_LOG
    try:
        times = json.loads(path.read_text()).get("chapters_seconds", {}) if path.is_file() else {}
    except (OSError, ValueError):
        return None
    return times.get(f"{scale}/{entry_id}")
