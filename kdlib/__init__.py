"""kdlib: the engine of the knowledge-distillation reproduction study (see docs/ARCHITECTURE.md)."""
from __future__ import annotations

import os

__version__ = "0.2.0"

# cuBLAS reads this when its first handle is created: deterministic matmuls on CUDA (see kdlib.runner)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

from .config import ARMS, ConfigError, RunConfig, SetupConfig  # noqa: E402
from .studyfile import get_setup, load_study  # noqa: E402


def run(setup: str, arm: str, seed: int = 0, scale: str = "cpu", results_dir: str | None = None,
        device: str = "auto", rcd_noise: str | None = None, kd_weight: float | None = None, **overrides) -> dict:
    """Train (or load) one arm of a setup at a seed index (and its teacher first) and return its test
    metrics. Runs are stored in `results_dir` (default: the scale's store, e.g. results/cpu)."""
    from .executors import LocalExecutor
    from .jobs import Job
    from .results import ResultsFolder

    study = load_study()
    cfg = study.setup(setup, scale, **overrides)
    run_cfg = cfg.run_config(arm, seed, rcd_noise=rcd_noise, kd_weight=kd_weight)
    store = ResultsFolder.of(study, scale, results_dir).store()
    jobs = [Job(cfg.teacher_run(seed))] + ([Job(run_cfg)] if run_cfg.is_student else [])
    report = LocalExecutor(device).run(jobs, store)
    if report.failed:
        raise RuntimeError("; ".join(f"{k}: {v}" for k, v in report.failed.items()))
    return store.metrics(run_cfg)


__all__ = ["ARMS", "ConfigError", "RunConfig", "SetupConfig", "get_setup", "load_study", "run"]
