import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _cache(tmp_path_factory):
    # decoded caches go to a per-session folder unless the user pinned one
    os.environ.setdefault("KDLIB_CACHE", str(Path.home() / ".cache" / "kdlib"))
    yield


def shared_file(name: str) -> Path:
    path = SHARED / name
    if not path.is_file():
        pytest.skip(f"{path} (local dataset copy) is not present")
    return path
