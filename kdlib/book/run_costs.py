"""What a plan costs: seconds per run and per entry, measured where a device ran it, else estimated.

Measured: the per-epoch seconds of an architecture on a dataset from a GPU check report
(`benchmarks/results/gpu_check-*.json`), or the mean training seconds of runs already in the scale's
store. Estimated: the model's multiply-accumulates per example (counted with hooks on one forward
pass) x 3 (forward and backward) x training examples x epochs, at an assumed sustained throughput;
estimates are marked so wherever they are shown.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Optional

from ..paths import REPO_ROOT
from ..progress import fmt_seconds

BENCH_RESULTS = REPO_ROOT / "benchmarks" / "results"
# Assumed sustained throughput for estimates: on CUDA 25 % of an H100's dense bf16 peak (about 990
# TFLOP/s); on the CPU what one single-threaded run of the mid scale's CIFAR CNN reached on this
# project's 2-core machine (about 6 TFLOP in 60 s).
ASSUMED_TFLOPS = {"cuda": 250.0, "cpu": 0.1}
# Seconds every optimisation step costs whatever the model's size (kernel launches, the optimiser, the
# Python loop): what keeps small models from using a GPU unless several runs share it.
STEP_OVERHEAD = {"cuda": 0.006, "cpu": 0.002}
def arch_label(spec) -> str:
    """An architecture's name as a reader counts them: the CIFAR ResNet family by depth."""
    return f"resnet{spec.args.get('depth', 20)}" if spec.name == "resnet" else spec.name


def count_macs(model, example) -> int:
    """Multiply-accumulates of one forward pass of `model` on `example` (conv, linear, attention matmuls)."""
    import torch
    import torch.nn as nn

    total = [0]

    def conv(m, inp, out):
        total[0] += out.numel() * (m.in_channels // m.groups) * int(torch.tensor(m.kernel_size).prod())

    def linear(m, inp, out):
        total[0] += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d)):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear))
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    return total[0] // max(1, len(example))


def input_shape(dataset: str, data_args: dict) -> Optional[tuple]:
    """A dataset's example shape without loading it: the registry's, or a text set's `max_len` where given."""
    from ..data import DATASETS

    meta = DATASETS.meta(dataset)
    shape = meta.get("input_shape")
    if shape is None:
        return None
    if meta["modality"] == "text" and "max_len" in data_args:
        return (data_args["max_len"],)
    return tuple(shape)


@lru_cache(maxsize=256)
def macs_of(model_name: str, args_json: str, dataset: str, data_args_json: str) -> Optional[int]:
    import torch

    from ..config import ModelSpec
    from ..data import DATASETS
    from ..models import build_model

    args, data_args = json.loads(args_json), json.loads(data_args_json)
    shape = input_shape(dataset, data_args)
    if shape is None:
        return None
    meta = DATASETS.meta(dataset)
    if meta["modality"] == "text":
        args.setdefault("vocab_size", data_args.get("vocab_size", 10000))
        example = torch.ones((2,) + shape, dtype=torch.long)
    else:
        example = torch.zeros((2,) + shape)
    try:
        return count_macs(build_model(ModelSpec(model_name, args), shape, meta["n_classes"], 0), example)
    except Exception:
        return None


def measured_epoch_seconds(device: str = "cuda") -> dict:
    """(model, args json, dataset) -> seconds per training epoch, from GPU check reports."""
    out = {}
    for path in sorted(BENCH_RESULTS.glob("gpu_check*.json")) if device == "cuda" else []:
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        for row in report.get("throughput", []):
            if "epoch_seconds" in row:
                out[(row["model"], json.dumps(row.get("args", {}), sort_keys=True), row["dataset"])] = row["epoch_seconds"]
    return out


def estimate_costs(study, scale: str, entries, device: Optional[str] = None) -> dict:
    """entry id -> {setup, per_run_seconds, seconds, source, per_run, total (text)}; '_plan' -> the whole plan
    (distinct runs once)."""
    from ..jobs import collect_jobs
    from ..results import ResultsFolder

    device = device or study.scale_info(scale).get("device", "cuda" if scale == "paper" else "cpu")
    measured = measured_epoch_seconds(device)
    store = ResultsFolder.of(study, scale).existing_store()
    setups = [(e.id, study.entry_setup(scale, e)) for e in entries]
    per_hash, out = {}, {}
    for entry_id, cfg in setups:
        secs, sources, runs = 0.0, set(), cfg.runs()
        for run in runs:
            s, src = run_seconds(run, cfg, measured, store, device)
            per_hash[run.hash] = s
            secs += s
            sources.add(src)
        src = "measured" if sources == {"measured"} else ("estimated" if "measured" not in sources else "partly measured")
        out[entry_id] = {"setup": cfg, "seconds": secs, "per_run_seconds": secs / len(runs), "source": src,
                         "per_run": f"{fmt_seconds(secs / len(runs))} ({src})", "total": fmt_seconds(secs)}
    jobs = collect_jobs(setups)
    total = sum(per_hash[j.cfg.hash] for j in jobs)
    out["_plan"] = {"seconds": total, "runs": len(jobs),
                    "summary": f"{len(jobs)} distinct runs, about {fmt_seconds(total)} on one {device.upper()} device"}
    return out


def device_kind(device) -> str:
    """The kind of device a run's provenance names ("cpu: x86_64, 2 cores" -> "cpu", "cuda: NVIDIA H200" -> "cuda"),
    or a planned device ("cuda:1" -> "cuda")."""
    return str(device).split(":")[0]


def run_seconds(run, cfg, measured: dict, store, device: str) -> tuple[float, str]:
    """Seconds one run takes: measured (this store, on the planned kind of device, or a GPU check's epoch
    time), else estimated. A run stored from another device (a paper-scale entry computed on the CPU) says
    nothing of the GPU's time."""
    if store is not None and store.has(run):
        prov = store.provenance(run)
        if device_kind(prov.get("device", "")) == device_kind(device):
            return float(prov["seconds"]), "measured"
    spec = run.model
    key = (spec.name, json.dumps(spec.args, sort_keys=True), run.dataset)
    epochs = run.train["epochs"]
    from ..data import DATASETS

    meta = DATASETS.meta(run.dataset)  # full split sizes: datasets too large to load just to count them
    if key in measured:
        return measured[key] * epochs * (1.3 if run.arm in ("kd", "rcd") and run.train["augment"] else 1.0), "measured"
    macs = macs_of(spec.name, json.dumps(spec.args, sort_keys=True), run.dataset,
                   json.dumps(run.data_args, sort_keys=True, default=str))
    if macs is None or "n_train" not in meta:
        return float("nan"), "estimated"
    n_train = run.data_args.get("n_train", meta["n_train"])
    n_eval = n_train + run.data_args.get("n_test", meta["n_test"])  # logits on the training and the test set
    flops = 2 * macs * (3 * n_train * epochs + n_eval)
    steps = epochs * -(-n_train // run.train["batch_size"])
    if run.arm in ("kd", "rcd") and run.train["augment"] and run.teacher_model is not None:
        t_macs = macs_of(run.teacher_model.name, json.dumps(run.teacher_model.args, sort_keys=True), run.dataset,
                         json.dumps(run.data_args, sort_keys=True, default=str)) or 0
        flops += 2 * t_macs * n_train * epochs  # the live teacher's forward pass on augmented batches
    return flops / (ASSUMED_TFLOPS[device] * 1e12) + steps * STEP_OVERHEAD[device], "estimated"

