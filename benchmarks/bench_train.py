"""Training speed of each setup's arms: seconds per epoch, what caching the teacher's logits saves, and
fp32 against bf16 (`train.precision`) for each setup's teacher, measured in the same run.

    .venv/bin/python benchmarks/bench_train.py [--scale cpu] [--device auto] [--repeats 3] [--setup NAME ...]
                                               [--epochs N] [--n-train N] [--no-bf16]

Times are the trainer's own per-epoch wall-clock times (synchronised on CUDA), mean ± std over repeats;
runs use the trainer's fixed thread count. The 'kd (live teacher)' row runs the teacher on every batch,
as feature variants and augmented data need, to show what the cached logits save. The 'teacher bf16'
row trains the same teacher with bf16 autocast (channels-last for images); its last column is the speed-up
over the setup's own precision. Run it on an otherwise idle machine: two processes on two cores halve both.
"""
from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

import torch

from kdlib import load_study
from kdlib.arms import DistillationArm, LiveTeacher, build_arm
from kdlib.runner import execute_run, load_run_data
from kdlib.train import build_for_data, cpu_bf16_units, cpu_threads, resolve_device, train


def epoch_seconds(cfg, data, dev, repeats, teacher_logits=None, teacher_model=None, live=False):
    secs = []
    for _ in range(repeats):
        arm = build_arm(cfg, len(data.y_train), data.n_classes)
        if live:  # force the live-teacher path of kd
            arm = DistillationArm(cfg.kd_weight, cfg.temperature, LiveTeacher(), None, 0.0)
        with cpu_threads():
            res = train(cfg, data, arm, dev, teacher_model=teacher_model, teacher_logits=teacher_logits)
        secs += [e["seconds"] for e in res.epoch_log[1:] or res.epoch_log]  # the first epoch warms up
    return statistics.mean(secs), (statistics.stdev(secs) if len(secs) > 1 else 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="cpu")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--setup", action="append", default=None, help="only these setups")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per timed run (default: the setup's)")
    ap.add_argument("--n-train", type=int, default=None, help="training examples (default: the setup's)")
    ap.add_argument("--no-bf16", action="store_true", help="leave out the fp32 / bf16 comparison")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    study = load_study()
    units = cpu_bf16_units() if dev.type == "cpu" else "CUDA"
    print(f"device {dev}, torch {torch.__version__}, bf16 units: {units or 'none (bf16 is emulated, slower)'}")
    print(f"{'setup':30s} {'arm':20s} {'s/epoch':>10s} {'± std':>8s} {'speed-up':>9s}")
    for name in args.setup or study.names(args.scale):
        over = {"kd_weight_variants": []}
        if args.epochs:  # fewer epochs: the warm-up shrinks to fit (per-epoch times do not depend on it)
            warmup = study.setup(name, args.scale).train["warmup_epochs"]
            over.update(epochs=args.epochs, warmup_epochs=min(warmup, args.epochs - 1))
        setup = study.setup(name, args.scale, **over)
        if args.n_train:
            setup = setup.with_changes(data_args={**setup.data_args, "n_train": args.n_train})
        t_cfg = setup.teacher_run(0)
        data = load_run_data(t_cfg)
        teacher = execute_run(t_cfg, dev)
        t_model = build_for_data(setup.teacher, data, 0)
        t_model.load_state_dict(teacher.model_state)
        logits = torch.as_tensor(teacher.train_logits)
        kd = replace(setup, variant="logit", variant_args={}).run_config("kd", 0)
        own = t_cfg.train["precision"]
        rows = [(f"teacher ({own})", epoch_seconds(t_cfg, data, dev, args.repeats))]
        if not build_arm(kd, len(data.y_train), data.n_classes).needs_teacher_model:  # augmented: always live
            rows.append(("kd (cached logits)", epoch_seconds(kd, data, dev, args.repeats, teacher_logits=logits)))
        rows.append(("kd (live teacher)", epoch_seconds(kd, data, dev, args.repeats, teacher_model=t_model, live=True)))
        if not args.no_bf16:
            other = "fp32" if own == "bf16" else "bf16"
            t_other = replace(t_cfg, train={**t_cfg.train, "precision": other})
            rows.append((f"teacher ({other})", epoch_seconds(t_other, data, dev, args.repeats)))
        for label, (m, s) in rows:
            ratio = f"{rows[0][1][0] / m:8.2f}x" if label.startswith("teacher (") and label != rows[0][0] else ""
            print(f"{name:30s} {label:20s} {m:10.4f} {s:8.4f} {ratio:>9s}", flush=True)


if __name__ == "__main__":
    main()
