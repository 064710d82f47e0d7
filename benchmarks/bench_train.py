"""Training speed of each setup's arms: seconds per epoch, and what caching the teacher's logits saves.

    .venv/bin/python benchmarks/bench_train.py [--scale cpu] [--device auto] [--repeats 3]

Times are wall-clock over whole runs (synchronised on CUDA), reported as mean ± std over repeats.
The 'kd (live teacher)' row forces a teacher forward pass per batch, as feature variants and augmented
data need, to show what the cached logits save.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from kdlib import load_study
from kdlib.runner import load_setup_data
from kdlib.train import build_for_data, resolve_device, train


def time_run(cfg, data, dev, repeats, **kw):
    secs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        train(cfg, data, dev, progress=None, **kw)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        secs.append((time.perf_counter() - t0) / cfg.train["epochs"])
    return statistics.mean(secs), (statistics.stdev(secs) if len(secs) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    dev = resolve_device(args.device)
    study = load_study()
    print(f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print(f"{'setup':28s} {'arm':20s} {'s/epoch':>10s} {'± std':>8s}")
    for name in study.names(args.scale):
        setup = study.setup(name, args.scale)
        data = load_setup_data(setup)
        t = train(setup.run("teacher", 0), data, dev, progress=None)
        rows = [("teacher", setup.run("teacher", 0), {}),
                ("kd (cached logits)", setup.run("kd", 0), {"teacher_train_logits": t.train_logits})]
        live = replace(setup, train={**setup.train, "augment": False}, variant="logit")
        teacher = build_for_data(setup.teacher, data, setup.run("teacher", 0).init_seed)
        teacher.load_state_dict(t.model.state_dict())

        rows.append(("kd (live teacher)", live.run("kd", 0), {"teacher": teacher, "teacher_train_logits": None,
                                                              "_live": True}))
        for label, cfg, kw in rows:
            if kw.pop("_live", False):
                # force the live-teacher path: a feature-free variant that still asks for the model
                from kdlib import distill
                orig = distill.LogitKD.needs_teacher_model
                distill.LogitKD.needs_teacher_model = True
                try:
                    m, s = time_run(cfg, data, dev, args.repeats, **kw)
                finally:
                    distill.LogitKD.needs_teacher_model = orig
            else:
                m, s = time_run(cfg, data, dev, args.repeats, **kw)
            print(f"{name:28s} {label:20s} {m:10.4f} {s:8.4f}")


if __name__ == "__main__":
    main()
