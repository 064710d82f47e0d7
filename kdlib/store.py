"""The run store: one folder per run, named by the hash of its full config.

    <root>/<hash>/config.json       the RunConfig
                  metrics.json      test metrics (students: against the teacher of the same seed)
                  provenance.json   code version, package versions, device, threads, seconds, epoch log,
                                    data fingerprint
                  outputs.npz       compressed: float16 test logits, float16 penultimate features of the
                                    CKA test subsample; teachers also the test labels; backdoor setups the
                                    float16 logits on triggered test inputs
                  train_logits.npy  teachers only: float32 logits on the training set (KD targets)
                  model.pt          teachers only: final weights (feature variants, augmentation)

                  manifest.json     size and SHA-256 of every other file, written last (runs stored
                                    before manifests existed have none: "legacy", still read)

The last two data files are what students need from a teacher; a shipped store (`slim`) leaves them out
(and out of the manifest). Every read vouches for the run: the first read of a run checks that its
config.json hashes to the folder's name (a swapped or renamed folder is refused), and every file read is
checked against the manifest, size and SHA-256, arrays and weights included (once per file version: the
check is cached by size and modification time), so a truncated, hand-edited or foreign file (another
teacher's training logits) is named instead of used. A store whose root holds `SEALED` (written by the
driver's `--seal` once every run has a manifest) refuses a run without a manifest: one put or edited
there by hand. `verify` checks every file of a run, that every file reads and that the config hashes to
the folder's name; `seal` writes the manifest of a legacy run after those checks and after recomputing
its accuracy (and a student's agreement) from its stored test logits.

A run is written into `<root>/.tmp-<hash>-<host>-<pid>-<random>/` and renamed into place, so a folder
named by a hash is complete unless something other than the store wrote it; an incomplete folder (say a
partial copy) counts as missing and is replaced by the next finished run. Temporary folders of processes
that no longer run are removed when the store is opened. A process trains a run while holding its lock
(`lock`, an flock on `.locks/<hash>`), so two drivers on one store do not train the same run twice. A write
that fails for the whole store (disk full, read-only) raises `StoreUnwritable`, which stops a training
phase at once; reading needs no write access.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from .config import RunConfig, SetupConfig, canonical_json

REQUIRED = ("config.json", "metrics.json", "provenance.json", "outputs.npz")
TEACHER_EXTRAS = ("train_logits.npy", "model.pt")
MANIFEST = "manifest.json"
SEALED = "SEALED"  # in a store's root: every run has a manifest, so a run without one is damage
# Write errors about the store, not the run: retrying the next run cannot succeed.
STORE_WIDE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}


class StoreError(RuntimeError):
    """A run folder is damaged or the store cannot be written; the message names the file."""


class StoreUnwritable(StoreError):
    """A write failed for a reason that holds for every run (disk full, read-only, no permission)."""


def config_hash(config: dict) -> str:
    """The hash of a stored config.json, computed as RunConfig.hash does (without `setup`)."""
    d = {k: v for k, v in config.items() if k != "setup"}
    return hashlib.sha256(canonical_json(d).encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_manifest(folder: Path, names: Iterable[str]) -> None:
    """manifest.json for the named files of a folder, written to a temporary file and renamed."""
    files = {n: {"size": (folder / n).stat().st_size, "sha256": _sha256(folder / n)} for n in sorted(names)}
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"version": 1, "files": files}, indent=1, sort_keys=True))
    os.replace(tmp, folder / MANIFEST)


def _stamp() -> str:
    """<host>@<pid>@<random>: whose temporary folder this is, so stale ones can be told from live ones."""
    return f"{socket.gethostname()}@{os.getpid()}@{uuid.uuid4().hex[:6]}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _too_close_in_float16(logits: np.ndarray) -> int:
    """How many rows' two top logits are too close to order once stored in float16 (their argmax may differ
    from the one the run computed in full precision)."""
    top2 = np.sort(logits, 1)[:, -2:]
    return int((top2[:, 1] - top2[:, 0] <= 2e-3 * np.maximum(1.0, np.abs(top2[:, 1]))).sum())


class RunStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():  # an existing store is only read: it may be read-only
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create the run store {self.root} ({e}); pick another folder with --results") from None
        self._manifests: dict[str, Optional[dict]] = {}
        self._vouched: set[str] = set()             # runs whose folder name, config and manifest were checked
        self._checked: set[tuple] = set()           # (path, size, mtime_ns) of files whose checksum matched
        self.damage: dict[str, str] = {}            # hash -> why a read refused the run (`problem`)
        self._whole: set[str] = set()               # runs `problem` found whole (asked once per store object)
        self.removed_stale = self._remove_stale()

    @property
    def sealed(self) -> bool:
        return (self.root / SEALED).is_file()

    # ------------------------------------------------------------------------------ state
    def path(self, run: RunConfig | str) -> Path:
        return self.root / (run if isinstance(run, str) else run.hash)

    def has(self, run: RunConfig | str) -> bool:
        """A finished run: every required file is there (a partial folder is not a run)."""
        p = self.path(run)
        return all((p / f).is_file() for f in REQUIRED)

    def has_teacher_extras(self, run: RunConfig | str, model: bool = False) -> bool:
        p = self.path(run)
        return (p / "train_logits.npy").is_file() and (not model or (p / "model.pt").is_file())

    def check_writable(self) -> None:
        probe = self.root / f".tmp-probe@{_stamp()}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError as e:
            raise StoreError(f"the run store {self.root} is not writable ({e}); pick another folder with --results") from None

    def lock_file(self, run: RunConfig | str) -> Path:
        """The file whose flock is the run's lock (`lock`)."""
        return self.root / ".locks" / (run if isinstance(run, str) else run.hash)

    @contextlib.contextmanager
    def lock(self, run: RunConfig | str):
        """Hold the run's lock (blocking): whoever trains a run holds it, so another process waits and
        then finds the run stored instead of training it again. flock: released when a process dies."""
        import fcntl

        path = self.lock_file(run)
        try:
            path.parent.mkdir(exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise self._unwritable(e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # the lock file stays: removing it would let a third process lock a new file

    def write_once(self, record) -> bool:
        """Write a run under its lock unless another process stored it meanwhile (a second driver on the store):
        True if this call stored it. The lock is the one the local executor trains under."""
        with self.lock(record.config):
            if self.has(record.config):
                return False
            self.write(record)
            return True

    def _unwritable(self, e: OSError) -> StoreError:
        cls = StoreUnwritable if e.errno in STORE_WIDE_ERRNOS else StoreError
        return cls(f"cannot write into the run store {self.root}: {e.strerror or e} (errno {e.errno}, "
                   f"{errno.errorcode.get(e.errno, '?')}); free space or pick another folder with --results")

    def _remove_stale(self) -> int:
        """Remove temporary folders left by killed writers (this machine's, whose process is gone)."""
        n = 0
        for p in list(self.root.glob(".tmp-*")) + list(self.root.glob(".trash-*")):
            parts = p.name.split("@")  # .tmp-<hash>@<host>@<pid>@<random>
            if len(parts) == 4 and parts[1] != socket.gethostname():
                continue  # another machine's writer (shared filesystem): not ours to judge
            if len(parts) == 4 and parts[2].isdigit() and pid_alive(int(parts[2])):
                continue  # a live writer on this machine
            shutil.rmtree(p, ignore_errors=True)
            n += 1
        return n

    # ------------------------------------------------------------------------------ write
    def write(self, record) -> Path:
        """Write a finished run (`kdlib.runner.RunRecord`) atomically; the first complete copy wins."""
        cfg: RunConfig = record.config
        final = self.path(cfg)
        tmp = self.root / f".tmp-{cfg.hash}@{_stamp()}"
        try:
            tmp.mkdir()
        except OSError as e:
            raise self._unwritable(e) from None
        try:
            (tmp / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, sort_keys=True, default=str))
            (tmp / "metrics.json").write_text(json.dumps(record.metrics, indent=1, sort_keys=True))
            (tmp / "provenance.json").write_text(json.dumps(record.provenance, indent=1, sort_keys=True, default=str))
            np.savez_compressed(tmp / "outputs.npz", **record.outputs)
            if record.train_logits is not None:
                np.save(tmp / "train_logits.npy", np.asarray(record.train_logits, dtype=np.float32))
            if record.model_state is not None:
                import torch

                torch.save(record.model_state, tmp / "model.pt")
            _write_manifest(tmp, [p.name for p in tmp.iterdir()])
            if self.has(cfg):
                shutil.rmtree(tmp)
                return final
            trash = None
            if final.exists():  # an incomplete folder: move it aside, then put the finished run in place
                trash = self.root / f".trash-{cfg.hash}@{_stamp()}"
                os.replace(final, trash)
            try:
                os.replace(tmp, final)
            except OSError:
                if not self.has(cfg):  # not a lost race with another writer of the same run
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise self._unwritable(e) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            self._manifests.pop(cfg.hash, None)
        return final

    # ------------------------------------------------------------------------------ read
    def _file(self, run, name: str) -> Path:
        """A file of a stored run, once the run is vouched for (`_vouch`), checked against the run's manifest:
        its size and its checksum (so a hand-edited metrics.json or another teacher's logits are not used)."""
        p = self.path(run) / name
        if not self.has(run):
            label = run if isinstance(run, str) else run.label
            raise StoreError(f"run {label} is not in the store {self.root}")
        self._vouch(p.parent.name)
        return self._checked_file(p)

    def _checked_file(self, p: Path) -> Path:
        entry = self._entries(p.parent.name).get(p.name)
        if entry is None:
            return p
        try:
            st = p.stat()
        except OSError as e:
            raise self._damaged(p, e) from None
        if st.st_size != entry["size"]:
            raise self._damaged(p, ValueError(f"{st.st_size} bytes, its manifest says {entry['size']}"))
        key = (str(p), st.st_size, st.st_mtime_ns)
        if key not in self._checked:
            if _sha256(p) != entry["sha256"]:
                raise self._damaged(p, ValueError("its checksum differs from its manifest (edited or replaced after "
                                                  "it was stored)"))
            self._checked.add(key)
        return p

    def _vouch(self, h: str) -> None:
        """Once per run and store object: a sealed store's run has a manifest, and its config.json hashes to
        the folder's name (a swapped or renamed folder would hand another run's numbers to this config)."""
        if h in self._vouched:
            return
        folder = self.path(h)
        if self.manifest(h) is None and self.sealed:
            raise self._damaged(folder / MANIFEST, FileNotFoundError(
                f"missing in a sealed store (the store's {SEALED} says every run has one): this run was put or "
                "edited here by hand"))
        p = self._checked_file(folder / "config.json")
        try:
            found = config_hash(json.loads(p.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError, AttributeError) as e:
            raise self._damaged(p, e) from None
        if found != h:
            raise self._damaged(p, ValueError(f"it hashes to {found}, not to its folder's name {h}: the folder holds "
                                              "another run (swapped or renamed)"))
        self._vouched.add(h)

    def manifest(self, run) -> Optional[dict]:
        """The run's manifest.json (read once per store object), or None for a legacy run without one. A
        manifest that does not read, or whose entries lack a size or checksum, is damage."""
        h = run if isinstance(run, str) else run.hash
        if h not in self._manifests:
            p = self.path(h) / MANIFEST
            try:
                m = json.loads(p.read_text()) if p.is_file() else None
            except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
                raise self._damaged(p, e) from None
            if m is not None:
                files = m.get("files") if isinstance(m, dict) else None
                if not isinstance(files, dict) or not all(
                        isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
                        for e in files.values()):
                    raise self._damaged(p, ValueError("not a manifest: each file needs a size and a sha256"))
            self._manifests[h] = m
        return self._manifests[h]

    def _entries(self, h: str) -> dict:
        return (self.manifest(h) or {}).get("files", {})

    def _damaged(self, path: Path, err: Exception) -> StoreError:
        return StoreError(f"{path} is damaged ({type(err).__name__}: {err}). Delete the folder {path.parent} "
                          "or run the driver with --repair to retrain that run.")

    def _json(self, run, name: str) -> dict:
        p = self._file(run, name)
        try:
            return json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as e:
            raise self._damaged(p, e) from None

    def metrics(self, run) -> dict:
        return self._json(run, "metrics.json")

    def config(self, run) -> dict:
        return self._json(run, "config.json")

    def provenance(self, run) -> dict:
        return self._json(run, "provenance.json")

    def outputs(self, run) -> dict[str, np.ndarray]:
        p = self._file(run, "outputs.npz")
        try:
            with np.load(p) as z:
                return {k: z[k] for k in z.files}
        except Exception as e:  # zipfile / EOF / ValueError on truncated or corrupt files
            raise self._damaged(p, e) from None

    def test_logits(self, run) -> np.ndarray:
        return self.outputs(run)["test_logits"].astype(np.float32)

    def backdoor_logits(self, run) -> np.ndarray:
        return self.outputs(run)["backdoor_logits"].astype(np.float32)

    def features(self, run) -> Optional[np.ndarray]:
        out = self.outputs(run)
        return out["features"].astype(np.float32) if "features" in out else None

    def train_logits(self, run) -> np.ndarray:
        p = self.path(run) / "train_logits.npy"
        if p.is_file():
            p = self._file(run, "train_logits.npy")
        else:
            raise StoreError(f"{p} is missing: this teacher was stored without its training logits (a shipped, "
                             "slim store), so students cannot be distilled from it; retrain it with --repair")
        try:
            return np.load(p)
        except Exception as e:
            raise self._damaged(p, e) from None

    def model_state(self, run) -> dict:
        import torch

        p = self.path(run) / "model.pt"
        if p.is_file():
            p = self._file(run, "model.pt")
        else:
            raise StoreError(f"{p} is missing: this teacher's weights were not stored (a shipped, slim store)")
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception as e:
            raise self._damaged(p, e) from None

    def verify(self, run) -> Optional[str]:
        """None if the run is whole; otherwise a message naming the run's damaged file and why. Checks the
        manifest (readable, well formed; present in a sealed store), every file it lists (present, size,
        checksum), that every file reads (the teachers' training logits and weights too), and that config.json
        hashes to the folder. Never raises for what it finds."""
        folder = self.path(run)
        h = folder.name
        self._vouched.discard(h)
        self._whole.discard(h)
        self._manifests.pop(h, None)
        try:
            if not self.has(h):
                absent = [n for n in REQUIRED if not (folder / n).is_file()]
                raise self._damaged(folder / absent[0], FileNotFoundError(
                    f"missing (the folder lacks {', '.join(absent)}: an incomplete copy, not a stored run)"))
            files = self._entries(h)
            bad = []
            for name, entry in files.items():
                p = folder / name
                if not p.is_file():
                    raise self._damaged(p, FileNotFoundError("listed in its manifest but missing"))
                if p.stat().st_size != entry["size"] or _sha256(p) != entry["sha256"]:
                    bad.append(name)
            if bad and len(bad) == len(files) > 1:
                raise self._damaged(folder / MANIFEST, ValueError(
                    "no file matches it (another run's manifest?)"))
            if bad:
                raise self._damaged(folder / bad[0], ValueError("its size or checksum differs from its manifest"))
            self._vouch(h)
            self.metrics(h), self.provenance(h), self.outputs(h)
            if (folder / "train_logits.npy").is_file():
                self.train_logits(h)
            if (folder / "model.pt").is_file():
                self.model_state(h)
        except StoreError as e:
            return str(e)
        except Exception as e:  # anything else a damaged folder can raise: named, never a traceback
            return f"{folder} is damaged ({type(e).__name__}: {e})"
        return None

    def problem(self, run) -> Optional[str]:
        """Why the tables must leave a stored run out (its folder, config, manifest, metrics, provenance or
        outputs do not vouch for it), or None. Remembered in `damage` so that the page that would have used the
        run can name it."""
        h = run if isinstance(run, str) else run.hash
        if h in self._whole:
            return None
        if h not in self.damage:
            try:
                self.metrics(h), self.provenance(h)
                if "outputs.npz" in self._entries(h):
                    self._file(h, "outputs.npz")  # size and checksum vouch for it; no need to decompress
                else:
                    self.outputs(h)  # a legacy run: only reading it shows the file is whole
            except StoreError as e:
                self.damage[h] = str(e)
            except Exception as e:  # whatever a damaged folder raises
                self.damage[h] = f"{self.path(h)} is damaged ({type(e).__name__}: {e})"
            else:
                self._whole.add(h)
                return None
        return self.damage[h]

    def incomplete(self) -> list[str]:
        """Folders named like a run (16 hex digits) that lack a required file: damage (a stored run is renamed
        into place whole), not a run."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and len(p.name) == 16
                      and all(c in "0123456789abcdef" for c in p.name) and not self.has(p.name))

    def recompute_check(self, run) -> Optional[str]:
        """Do the run's stored metrics follow from its stored outputs? Accuracy from the test logits against
        the labels its teacher stored, and a student's agreement with its teacher's predictions; the logits are
        float16, so examples whose two top logits are too close to order in float16 may differ and are allowed.
        None if they follow (or cannot be recomputed: no labels, no teacher in the store), else the problem."""
        cfg = self.config(run)
        teacher = run if cfg.get("arm") == "teacher" else cfg.get("teacher_hash")
        if not teacher or not self.has(teacher):
            return None
        try:
            labels, tz = self.outputs(teacher).get("test_labels"), self.outputs(teacher)["test_logits"].astype(np.float32)
        except StoreError:  # a damaged teacher is named on its own; this run cannot be recomputed from it
            return None
        z = self.outputs(run)["test_logits"].astype(np.float32)
        if labels is None or len(labels) != len(z):
            return None
        close = _too_close_in_float16(z)
        metrics, pred = self.metrics(run), z.argmax(1)
        checks = [("accuracy", float((pred == labels).mean()))]
        if teacher != run and "agreement" in metrics:
            close += _too_close_in_float16(tz)
            checks.append(("agreement", float((pred == tz.argmax(1)).mean())))
        for key, value in checks:
            if key in metrics and abs(metrics[key] - value) * len(z) > close + 0.5:
                return (f"{self.path(run) / 'metrics.json'}: its {key} {metrics[key]:.4f} does not follow from its stored "
                        f"test logits ({value:.4f}; {close} example(s) too close to call in float16)")
        return None

    def seal(self, run) -> Optional[str]:
        """Write the manifest of a legacy run (stored without one) once `verify` finds every file whole,
        config.json hashing to the folder's name, and its metrics following from its outputs
        (`recompute_check`). None if sealed or already sealed, else the problem."""
        if self.manifest(run) is not None:
            return None
        problem = self.verify(run) or self.recompute_check(run)
        if problem:
            return problem
        folder = self.path(run)
        try:
            _write_manifest(folder, [p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")])
        except OSError as e:
            raise self._unwritable(e) from None
        finally:
            self._manifests.pop(folder.name, None)
        return None

    def mark_sealed(self) -> None:
        """Write `SEALED` at the root: from now on a run without a manifest is refused as damage."""
        try:
            (self.root / SEALED).write_text("every run of this store has a manifest.json; a run without one is damage\n")
        except OSError as e:
            raise self._unwritable(e) from None

    def discard(self, run) -> None:
        """Move a (damaged) run out of the way so it is retrained."""
        p = self.path(run)
        self._manifests.pop(p.name, None)
        self._vouched.discard(p.name), self._whole.discard(p.name), self.damage.pop(p.name, None)
        if p.exists():
            trash = self.root / f".trash-{p.name}@{_stamp()}"
            os.replace(p, trash)
            shutil.rmtree(trash, ignore_errors=True)

    def hashes(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith(".") and self.has(p.name))

    def stale_tmp(self) -> list[Path]:
        return sorted(p for p in self.root.glob(".tmp-*") if p.is_dir())

    def slim(self) -> int:
        """Drop what only students need from teachers (training logits, weights): a store to ship."""
        n = 0
        for h in self.hashes():
            dropped = [name for name in TEACHER_EXTRAS if (self.path(h) / name).is_file()]
            for name in dropped:
                (self.path(h) / name).unlink()
                n += 1
            manifest = self.manifest(h)
            if dropped and manifest is not None:  # the manifest lists what stays
                _write_manifest(self.path(h), [f for f in manifest["files"] if f not in dropped])
                self._manifests.pop(h, None)
        return n

    def missing(self, setup: SetupConfig) -> list[RunConfig]:
        return [cfg for cfg in setup.runs() if not self.has(cfg)]

    def stale_versions(self, wanted: Iterable[RunConfig], exclude: Iterable[str] = ()) -> dict[str, dict]:
        """For runs not in the store: a stored run of the same setup, arm, seed, KD weight and noise under
        another hash (the code or the study file changed its config), with the fields that differ. The setup
        is the name its first writer gave (a run shared by two setups carries one name): another setup's runs
        are never taken for an old version of this one's. `exclude`: hashes never taken for an old version
        (the runs of a plan's other entries, e.g. the same setup at another training-set size)."""
        index, exclude = {}, set(exclude)
        for h in self.hashes():
            if h in exclude:
                continue
            c = self.config(h)
            index.setdefault((c.get("setup"), c["arm"], c["seed"], c.get("kd_weight"), c.get("rcd_noise")), []).append((h, c))
        out = {}
        for cfg in wanted:
            if self.has(cfg):
                continue
            new = cfg.to_dict()
            candidates = index.get((cfg.setup, cfg.arm, cfg.seed, cfg.kd_weight, cfg.rcd_noise), [])
            diffs = [(sorted(k for k in set(new) | set(old) if k != "setup"
                             and canonical_json(new.get(k)) != canonical_json(old.get(k))), h) for h, old in candidates]
            if diffs:  # the stored run closest to this one: its changed fields say what moved
                diff, h = min(diffs, key=lambda d: len(d[0]))
                out[cfg.hash] = {"label": cfg.label, "stored_hash": h, "fields": diff}
        return out

