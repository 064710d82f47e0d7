"""kdlib: the engine of the knowledge-distillation reproduction study (see docs/ARCHITECTURE.md)."""
from __future__ import annotations

__version__ = "0.1.0"

from .config import ARMS, ConfigError, RunConfig, SetupConfig  # noqa: E402
from .setups import get_setup, load_study  # noqa: E402


def run(setup: str, arm: str, seed: int = 0, scale: str = "cpu", results: str | None = None,
        device: str = "auto", rcd_noise: str | None = None, **overrides) -> dict:
    """Train (or load) one arm of a setup at a seed index and return its test metrics.
    Runs are stored in `results` (default: results/<scale>, the driver's store for that scale)."""
    from .paths import from_root
    from .runner import run_one
    from .store import RunStore

    cfg = get_setup(setup, scale, **overrides)
    return run_one(cfg, arm, seed, RunStore(from_root(results or f"results/{scale}") / "runs"), device, rcd_noise=rcd_noise)


__all__ = ["ARMS", "ConfigError", "RunConfig", "SetupConfig", "get_setup", "load_study", "run"]
