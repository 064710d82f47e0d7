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


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """A data folder in KDLIB_DATA and a cache, both in tmp_path; the repo's data/ and ../shared/data hidden."""
    from kdlib.data import _load_cached

    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("KDLIB_DATA", str(folder))
    monkeypatch.setenv("KDLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("kdlib.paths.REPO_ROOT", tmp_path / "repo")
    _load_cached.cache_clear()
    yield folder
    _load_cached.cache_clear()
