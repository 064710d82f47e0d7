"""What this book cannot say, computed where numbers are involved: teachers short of the paper's regime (each
complete entry's teacher test / train accuracy and whether it fits its training set), every reconstructed
protocol item (the study file's provenance fields), the seed count's p-value floor, and the plan entries that
have never run. Reads the study file and the stores only."""
from __future__ import annotations

import pandas as pd

from ..stats import ALPHA, min_attainable_p, power_limits
from .frames import stored_count
from .setup_analysis import plan_setups


def teacher_table(evidence) -> pd.DataFrame:
    """One row per complete entry with its own teacher (every scale with a store; the main reading): teacher
    test and training accuracy, whether the teacher fits its training set (the study file's threshold), the
    teacher architecture and training epochs."""
    rows, seen = [], set()
    for scale, summaries in evidence.summaries.items():
        for s in summaries:
            if s["kd_weight"] != s["main_kd_weight"]:
                continue
            key = (scale, tuple(s.get("teacher_hashes", ())))
            if key in seen:  # sweeps and variants share their teachers: one row
                continue
            seen.add(key)
            rows.append({"scale": scale, "entry": s["id"], "dataset": s["dataset"], "teacher": s["teacher_model"],
                         "epochs": s["epochs"], "teacher test (%)": 100 * s["teacher_accuracy"],
                         "teacher train (%)": 100 * s["teacher_train_accuracy"],
                         "fits its training set": ("yes" if s["teacher_train_accuracy"] >= s["fitted_train_accuracy"]
                                                   else f"no (below {100 * s['fitted_train_accuracy']:g} %)")})
    return pd.DataFrame(rows)


def reconstructed_items(study) -> pd.DataFrame:
    """Every provenance field of every setup that the study file marks as reconstructed (not the paper's)."""
    rows = []
    for name in sorted(study.setup_specs):
        for field, value in ((study.setup_specs[name] or {}).get("provenance") or {}).items():
            if str(value).startswith("reconstructed"):
                rows.append({"setup": name, "item": field, "what the study file says": str(value)})
    return pd.DataFrame(rows, columns=["setup", "item", "what the study file says"])


def never_run(study, evidence) -> pd.DataFrame:
    """Plan entries of the shown scales and of the paper scale with no run in their store."""
    rows = []
    for scale in dict.fromkeys(list(evidence.scales) + ["paper"]):
        if scale not in study.scales:
            continue
        store = evidence.stores.get(scale)
        pending = set(study.pending(scale))
        for entry_id, cfg in plan_setups(study, scale):
            runs, have = cfg.runs(), stored_count(store, cfg)
            if have < len(runs):
                rows.append({"scale": scale, "entry": entry_id, "runs stored": f"{have} of {len(runs)}",
                             "why": "still training (pending in study.yaml)" if entry_id in pending else
                                    ("needs a GPU (the paper scale)" if study.scale_info(scale).get("device") == "cuda"
                                     else "not run in this build")})
    return pd.DataFrame(rows, columns=["scale", "entry", "runs stored", "why"])


def power_sentence(n_seeds: int = 10, n_tests: int = 3) -> str:
    lim = power_limits(n_seeds, n_tests)
    return (f"With {n_seeds} seeds the exact signed-rank test's smallest one-sided p is 2^-{n_seeds} = "
            f"{min_attainable_p(n_seeds):.5f}; in a primary family of {n_tests} tests, BY-corrected at {ALPHA:g}, the "
            f"smallest adjusted p is {lim['min_p_by_best_case']:.4f} when every test is at its floor and "
            f"{lim['min_p_by_lone_test']:.4f} for a lone test at its floor. A test whose zero differences drop some "
            "seeds has a higher floor, so a setup where kd and control tie on several seeds may be unable to reach "
            "significance at all: such setups are called not testable, never evidence either way.")
