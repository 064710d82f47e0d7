import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
MAX_WORKERS = 4  # past a few workers the suite waits on its longest file (test_book), and each worker holds torch


def pytest_xdist_auto_num_workers(config):
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


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


VOWELS_ENTRY = ["--scale", "smoke", "--only", "vowels-seqcnn-self", "--workers", "1"]


@pytest.fixture(scope="session")
def vowels_setup():
    """The smoke entry the store tests damage copies of."""
    from kdlib import load_study

    return load_study().setup("vowels-seqcnn-self", "smoke")


@pytest.fixture(scope="session")
def vowels_results(tmp_path_factory):
    """A results folder with that entry trained (once per session): tests damage copies, never this one."""
    from kdlib.driver import main as driver_main

    folder = tmp_path_factory.mktemp("vowels") / "results"
    assert driver_main(VOWELS_ENTRY + ["--results", str(folder), "--train-only"]) == 0
    return folder


@pytest.fixture()
def vowels_copy(vowels_results, tmp_path):
    """A copy of `vowels_results` of the test's own."""
    import shutil

    shutil.copytree(vowels_results, tmp_path / "results")
    return tmp_path / "results"


class EpochBars:
    """Progress bars put in place of a module's `ProgressBar` that keep every epoch they heard and what was
    left on the line when they closed."""

    def __init__(self, monkeypatch):
        from kdlib.progress import ProgressBar

        self.monkeypatch, self.bars = monkeypatch, []
        bars = self.bars

        class Recording(ProgressBar):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                self.heard, self.left_on_close = [], None
                bars.append(self)

            def epoch(self, key, done, epochs):
                self.heard.append((key, done, epochs))
                super().epoch(key, done, epochs)

            def close(self):
                self.left_on_close = dict(self.epochs)
                super().close()

        self.cls = Recording

    def patch(self, module) -> "EpochBars":
        self.monkeypatch.setattr(module, "ProgressBar", self.cls)
        return self

    def check_last(self, jobs, epochs: int) -> None:
        """The last bar heard epochs 1..n of every job, in order, of no other, and none stayed after the end."""
        bar = self.bars[-1]
        for j in jobs:
            assert [(k, n) for h, k, n in bar.heard if h == j.cfg.hash] == [(k, epochs) for k in range(1, epochs + 1)]
        assert {h for h, _, _ in bar.heard} == {j.cfg.hash for j in jobs}
        assert bar.left_on_close == {}


@pytest.fixture
def epoch_bars(monkeypatch):
    return EpochBars(monkeypatch)

