"""`--reproduce N`: train a few stored runs again, in memory, and compare them with the store bit for bit.

Per plan entry: the teacher of seed 0, then its students (kd first, then control, rcd, ...), N runs in all.
A student learns from the stored teacher, as it trained, where the store kept what it needs, and from the
teacher retrained here where it did not (a shipped store keeps no training logits or weights). Nothing is written to the store.

CPU runs are bitwise repeatable where the arithmetic is the same: the same torch, the same precision and
the same CPU kernels (ATen's AVX2 / AVX512 paths, the bf16 units). Each run's report says whether the
machine it was stored from matches this one, so that a difference reads as expected (other kernels) or as
a failure to reproduce (the same kind of machine).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .config import RunConfig, canonical_json

ARM_ORDER = ("teacher", "kd", "control", "rcd")


def pick_runs(setup, n: int) -> list[RunConfig]:
    """The first `n` runs of seed 0: its teacher, then kd, control and rcd (the plan's order within an arm)."""
    seed0 = [r for r in setup.runs() if r.seed == 0]
    rank = {a: i for i, a in enumerate(ARM_ORDER)}
    return sorted(seed0, key=lambda r: rank.get(r.arm, len(ARM_ORDER)))[:n]


def machine_kind(device: str) -> Optional[str]:
    """What of a recorded device sets a CPU run's rounding: the device without its core count
    ("cpu: x86_64, 2 cores, AMD EPYC, AVX2 kernels" -> "cpu: x86_64, AMD EPYC, AVX2 kernels"); None where the
    record does not name its kernels (CPU runs stored before they were recorded). A CUDA device as recorded."""
    if device.startswith("cuda"):
        return device
    if "kernels" not in device:
        return None
    return re.sub(r", \d+ cores", "", device)


def environment_differences(stored: dict, here: dict) -> list[str]:
    """Why a run may not come back bit for bit, from the provenance it was stored with and this machine's
    (empty: nothing explains a difference): a run recorded as not bitwise reproducible, another kind of
    device, another torch, another precision."""
    out = []
    if stored.get("bitwise_reproducible") is False:  # CUDA's bf16 autocast and kernels, recorded per run
        out.append("it was stored as not bitwise reproducible ("
                   + ("; ".join(stored.get("nondeterminism") or []) or "no reason recorded") + ")")
    was, now = machine_kind(stored.get("device", "")), machine_kind(here.get("device", ""))
    if was is None:
        out.append(f"its device `{stored.get('device', '?')}` does not name the CPU kernels it used")
    elif was != now:
        out.append(f"stored from `{was}`, here `{now}`")
    torch_was, torch_now = stored.get("packages", {}).get("torch"), here.get("packages", {}).get("torch")
    if torch_was != torch_now:
        out.append(f"torch {torch_was} then, {torch_now} here")
    if stored.get("precision") and stored.get("precision") != here.get("precision"):
        out.append(f"precision `{stored['precision']}` then, `{here.get('precision')}` here")
    return out


@dataclass
class Comparison:
    """One stored run against its retraining."""

    label: str
    hash: str
    identical: bool = False
    arrays_differing: list = field(default_factory=list)
    metrics_differing: list = field(default_factory=list)
    max_abs_diff: Optional[float] = None          # over the float arrays of outputs.npz
    prediction_agreement: Optional[float] = None  # of the test predictions, stored vs retrained
    accuracy: tuple = (None, None)                # stored, retrained
    environment: list = field(default_factory=list)
    error: Optional[str] = None

    def line(self) -> str:
        head = f"  {self.label} ({self.hash}): "
        if self.error:
            return head + f"NOT COMPARED: {self.error}"
        if self.identical:
            return head + "identical bit for bit (every output array and metric)"
        acc = " -> ".join(f"{a:.4f}" if a is not None else "?" for a in self.accuracy)
        why = ("; " + "; ".join(self.environment) + ": the difference may come from that") if self.environment else \
              "; on the same kind of machine, torch and precision: NOT REPRODUCED"
        return (head + f"differs: arrays {', '.join(self.arrays_differing) or 'none'}, "
                f"{len(self.metrics_differing)} metric(s); max |diff| {self.max_abs_diff:.3g}, test predictions "
                f"agree on {100 * self.prediction_agreement:.1f} %, accuracy {acc}{why}")


def compare(label: str, run_hash: str, stored_outputs: dict, stored_metrics: dict, stored_prov: dict, record) -> Comparison:
    """A stored run (its outputs.npz arrays, metrics, provenance) against a `RunRecord` of the same config."""
    c = Comparison(label, run_hash, accuracy=(stored_metrics.get("accuracy"), record.metrics.get("accuracy")))
    new = record.outputs
    c.arrays_differing = sorted(k for k in set(stored_outputs) | set(new)
                                if k not in stored_outputs or k not in new
                                or not np.array_equal(np.asarray(stored_outputs[k]), np.asarray(new[k])))
    # NaN-safe: metrics compared as their canonical JSON
    c.metrics_differing = sorted(k for k in set(stored_metrics) | set(record.metrics)
                                 if canonical_json(stored_metrics.get(k)) != canonical_json(record.metrics.get(k)))
    c.identical = not c.arrays_differing and not c.metrics_differing
    diffs = [float(np.abs(np.asarray(stored_outputs[k], np.float64) - np.asarray(new[k], np.float64)).max())
             for k in c.arrays_differing if k in stored_outputs and k in new
             and np.asarray(new[k]).dtype.kind == "f" and np.shape(stored_outputs[k]) == np.shape(new[k])]
    c.max_abs_diff = max(diffs, default=0.0)
    if "test_logits" in stored_outputs and "test_logits" in new:
        c.prediction_agreement = float((np.asarray(stored_outputs["test_logits"]).argmax(1)
                                        == np.asarray(new["test_logits"]).argmax(1)).mean())
    c.environment = [] if c.identical else environment_differences(stored_prov, record.provenance)
    return c


def reproduce_entry(setup, store, n: int, device="auto", log: Callable[[str], None] = print,
                    execute: Optional[Callable] = None, retrained: Optional[dict] = None) -> list[Comparison]:
    """Retrain `pick_runs(setup, n)` and compare each with its stored run. `execute(cfg, device, teacher)`
    trains one run (`runner.execute_run`); `retrained` (hash -> record) is shared across the entries of a plan
    so that a run two entries share is trained and reported once."""
    from .runner import TeacherArtifacts, execute_run, teacher_needs

    execute = execute or execute_run
    retrained = {} if retrained is None else retrained  # run hash -> RunRecord: entries that share runs train them once
    out = []
    for cfg in pick_runs(setup, n):
        if cfg.hash in retrained:
            continue
        problem = "not in the store" if not store.has(cfg) else store.problem(cfg)
        if problem:  # missing or damaged: nothing to compare with
            out.append(Comparison(cfg.label, cfg.hash, error=problem))
            log(out[-1].line())
            continue
        teacher = None
        try:
            if cfg.is_student:  # as it trained: from the stored teacher where the store kept what it needs
                need_logits, need_model = teacher_needs(cfg)
                if not (need_logits or need_model) or store.has_teacher_extras(cfg.teacher_hash, model=need_model):
                    teacher = TeacherArtifacts.from_store(store, cfg.teacher_hash, need_logits, need_model)
                elif cfg.teacher_hash in retrained:
                    teacher = retrained[cfg.teacher_hash].teacher_artifacts()
                else:
                    out.append(Comparison(cfg.label, cfg.hash, error="its teacher is stored slim (no training logits or "
                                                                     "weights) and did not train again here"))
                    log(out[-1].line())
                    continue
            log(f"reproduce: training {cfg.label} again ...")
            record = execute(cfg, device, teacher)
        except Exception as e:  # a run that cannot train here (data that differ, a missing file) is one row
            out.append(Comparison(cfg.label, cfg.hash, error=f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"))
            log(out[-1].line())
            continue
        retrained[cfg.hash] = record
        c = compare(cfg.label, cfg.hash, store.outputs(cfg.hash), store.metrics(cfg.hash), store.provenance(cfg.hash),
                    record)
        log(c.line())
        out.append(c)
    return out


def summary(results: list[Comparison]) -> tuple[str, int]:
    """The closing line and the exit code: 0 when every run compared is identical, else 1."""
    same = sum(c.identical for c in results)
    failed = [c for c in results if not c.identical and not c.error and not c.environment]
    expected = [c for c in results if not c.identical and not c.error and c.environment]
    errors = [c for c in results if c.error]
    text = (f"reproduce: {same} of {len(results)} run(s) identical bit for bit"
            + (f", {len(expected)} differ where the machine, torch or precision differ (or are not recorded)" if expected else "")
            + (f", {len(failed)} differ on the same kind of machine (NOT REPRODUCED)" if failed else "")
            + (f", {len(errors)} not compared" if errors else ""))
    return text, 0 if same == len(results) and results else 1
