"""One run from config to record: data -> arm -> train -> evaluate -> metrics.

`execute_run(cfg, teacher)` is a pure step (no store): it returns a `RunRecord` that an executor writes
into the run store, locally or after sending it back from a cluster worker. A student gets what it
needs from its teacher as `TeacherArtifacts`, read from the store or passed from the teacher's record.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from typing import Callable, Optional

import numpy as np
import torch

from . import backdoor as bd
from .arms import build_arm
from .config import RunConfig
from .data import DataBundle, load_dataset
from .evaluate import cka_rows, evaluate
from .metrics import backdoor_metrics, functional_metrics
from .provenance import provenance
from .train import CPU_THREADS, build_for_data, cpu_threads, precision_used, resolve_device, train

F16_MAX = float(np.finfo(np.float16).max)


class NonFiniteOutputError(FloatingPointError):
    """A trained model's outputs are not finite (or do not fit the store's float16)."""


class DataMismatchError(RuntimeError):
    """A student would be distilled from teacher logits computed on other training data."""


@dataclass
class TeacherArtifacts:
    """What a student needs from the teacher of its seed."""

    hash: str
    test_logits: np.ndarray                      # float32 (as stored, float16-rounded)
    fingerprint: Optional[str] = None            # of the training set the teacher's logits are for
    test_fingerprint: Optional[str] = None       # of the test set its test logits are for
    accuracy: Optional[float] = None             # its stored test accuracy (checks the logits' row order)
    features: Optional[np.ndarray] = None        # penultimate features of the CKA subsample
    train_logits: Optional[np.ndarray] = None    # KD targets (float32)
    model_state: Optional[dict] = None           # for feature variants and augmented inputs

    @classmethod
    def from_store(cls, store, teacher_hash: str, need_logits: bool = True, need_model: bool = False) -> "TeacherArtifacts":
        if not store.has(teacher_hash):
            raise ValueError(f"teacher {teacher_hash} is not in the store {store.root}")
        return cls.from_outputs(teacher_hash, store.outputs(teacher_hash), store.provenance(teacher_hash).get("data", {}),
                                store.metrics(teacher_hash).get("accuracy"),
                                store.train_logits(teacher_hash) if need_logits else None,
                                store.model_state(teacher_hash) if need_model else None)

    @classmethod
    def from_outputs(cls, teacher_hash: str, outputs: dict, data: dict, accuracy: Optional[float],
                     train_logits: Optional[np.ndarray] = None, model_state: Optional[dict] = None) -> "TeacherArtifacts":
        """From a teacher's stored outputs (float16 arrays, as in outputs.npz), the `data` part of its
        provenance (fingerprints) and its stored test accuracy."""
        return cls(hash=teacher_hash, test_logits=outputs["test_logits"].astype(np.float32),
                   fingerprint=data.get("fingerprint"), test_fingerprint=data.get("test_fingerprint"), accuracy=accuracy,
                   features=outputs["features"].astype(np.float32) if "features" in outputs else None,
                   train_logits=train_logits, model_state=model_state)

    def check_against(self, label: str, data: DataBundle) -> None:
        """Refuse a teacher whose outputs are for other data: its training logits for another training
        set (order included), its test logits for another test set or in another row order. Teachers
        stored without both fingerprints (before they were recorded) are refused too: retrain them."""
        for what, stored, ours in (("training", self.fingerprint, data.fingerprint),
                                   ("test", self.test_fingerprint, data.test_fingerprint)):
            if stored is None:
                raise DataMismatchError(
                    f"{label}: its teacher {self.hash} has no stored {what}-set fingerprint, so its logits cannot "
                    f"be checked against this run's data; delete that teacher's folder to retrain it")
            if stored != ours:
                raise DataMismatchError(
                    f"{label}: the teacher's logits were computed on {what} data with fingerprint {stored}, but "
                    f"this run's {what} data has fingerprint {ours} (another copy, subset or order of the dataset, or "
                    "features computed in float32 on another kind of CPU, as the audio front end's default is); "
                    "retrain the teacher on this data")
        y = data.y_test.numpy()
        if self.test_logits.shape != (len(y), data.n_classes):
            raise DataMismatchError(f"{label}: the teacher's test logits have shape {self.test_logits.shape}, "
                                    f"expected {(len(y), data.n_classes)}")
        # the stored accuracy was computed from the same float16 logits: any reordering of rows changes it
        acc = float((self.test_logits.argmax(1) == y).mean())
        if self.accuracy is None or abs(acc - self.accuracy) > 1e-9:
            raise DataMismatchError(f"{label}: the teacher's test logits give accuracy {acc:.6f} on this test set, "
                                    f"but its stored accuracy is {self.accuracy}: its outputs.npz does not belong to it "
                                    "(rows permuted or replaced); delete that teacher's folder to retrain it")


@dataclass
class RunRecord:
    """A finished run, ready for `RunStore.write`."""

    config: RunConfig
    metrics: dict
    provenance: dict
    outputs: dict                          # arrays for outputs.npz
    train_logits: Optional[np.ndarray] = None  # teachers only
    model_state: Optional[dict] = None         # teachers only

    def teacher_artifacts(self) -> TeacherArtifacts:
        return TeacherArtifacts.from_outputs(self.config.hash, self.outputs, self.provenance["data"],
                                             self.metrics.get("accuracy"), self.train_logits, self.model_state)


def teacher_needs(cfg: RunConfig) -> tuple[bool, bool]:
    """(needs the teacher's training logits, needs its weights): the arm object decides."""
    if not cfg.is_student or cfg.arm == "control":
        return False, False
    arm = build_arm(cfg, 1, 2)
    return arm.needs_teacher_logits, arm.needs_teacher_model


def load_run_data(cfg: RunConfig) -> DataBundle:
    return load_dataset(cfg.dataset, **cfg.data_args)


def _mean(values: list) -> Optional[float]:
    return round(float(np.mean(values)), 1) if values else None


def _f16(t: torch.Tensor) -> np.ndarray:
    return t.numpy().astype(np.float16)


def _deterministic(dev: torch.device) -> None:
    """Ask for deterministic kernels where torch has them; what is not is recorded per run."""
    if dev.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def execute_run(cfg: RunConfig, device: str | torch.device = "auto",
                teacher: Optional[TeacherArtifacts] = None,
                on_epoch: Optional[Callable[[int, int], None]] = None) -> RunRecord:
    """Train and evaluate one run. Students need `teacher` (the artifacts of `cfg.teacher_hash`);
    `on_epoch(epoch, epochs)` hears of each epoch trained."""
    dev = resolve_device(device)
    _deterministic(dev)
    data = checked_data(cfg, teacher)
    arm = build_arm(cfg, len(data.y_train), data.n_classes)
    teacher_model, teacher_logits = teacher_inputs(cfg, arm, teacher, data)
    spec, train_data = training_set(cfg, data)
    with warnings.catch_warnings(record=True) as caught, cpu_threads():
        warnings.simplefilter("always")
        res = train(cfg, train_data, arm, dev, teacher_model=teacher_model, teacher_logits=teacher_logits,
                    on_epoch=on_epoch)
        logits = evaluate_sets(cfg, res.model, data, spec, dev)
    nondeterministic = sorted({str(w.message).split("\n")[0][:200] for w in caught
                               if "deterministic" in str(w.message).lower()})
    check_finite(cfg, logits)
    outputs, m = run_metrics(cfg, logits, data, teacher, spec)
    is_teacher = cfg.arm == "teacher"
    return RunRecord(config=cfg, metrics=m, provenance=run_provenance(dev, res, data, nondeterministic, cfg), outputs=outputs,
                     train_logits=logits["train"].numpy() if is_teacher else None,
                     model_state={k: v.cpu() for k, v in res.model.state_dict().items()} if is_teacher else None)


# ------------------------------------------------------------------ the steps of one run, in order
def checked_data(cfg: RunConfig, teacher: Optional[TeacherArtifacts]) -> DataBundle:
    """The run's data (cached per process); a student's teacher must have been computed on the same training
    and test tensors, and its stored test logits must give its stored accuracy."""
    data = load_run_data(cfg)
    if cfg.is_student:
        if teacher is None or teacher.hash != cfg.teacher_hash:
            raise ValueError(f"{cfg.label}: needs the artifacts of its teacher {cfg.teacher_hash}")
        teacher.check_against(cfg.label, data)
    return data


def teacher_inputs(cfg: RunConfig, arm, teacher: Optional[TeacherArtifacts], data: DataBundle):
    """(teacher model, teacher training logits), each only if the arm needs it, else None."""
    teacher_model = teacher_logits = None
    if arm.needs_teacher_model:
        if teacher.model_state is None:
            raise ValueError(f"{cfg.label}: this run needs the teacher model (feature variant or augmented inputs)")
        teacher_model = build_for_data(cfg.teacher_model, data, 0)
        teacher_model.load_state_dict(teacher.model_state)
    if arm.needs_teacher_logits:
        if teacher.train_logits is None:
            raise ValueError(f"{cfg.label}: this run needs the teacher's training logits")
        teacher_logits = torch.as_tensor(teacher.train_logits)
    return teacher_model, teacher_logits


def training_set(cfg: RunConfig, data: DataBundle) -> tuple[Optional[dict], DataBundle]:
    """(the backdoor spec or None, the data the run trains on): only a backdoored teacher sees poisoned data."""
    spec = bd.check_spec(cfg.backdoor, data.n_classes, data.input_shape, data.modality,
                         data.extra.get("vocab_size")) if cfg.backdoor else None
    if spec is not None and cfg.arm == "teacher":
        x, y, _ = bd.poison(data.x_train, data.y_train, spec, cfg.order_seed)
        return spec, replace(data, x_train=x, y_train=y)
    return spec, data


def evaluate_sets(cfg: RunConfig, model, data: DataBundle, spec: Optional[dict], dev: torch.device) -> dict:
    """Logits on the clean training set (KD targets, train accuracy), the test set (and its triggered copy),
    and the penultimate features of the CKA subsample."""
    sets = {"train": data.x_train, "test": data.x_test}
    if spec is not None:
        sets["triggered"] = bd.triggered_test(data.x_test, data.y_test, data.x_train, spec)
    return evaluate(model, sets, dev, cfg.train["eval_batch_size"], cka_rows(len(data.y_test)), cfg.train["precision"])


def check_finite(cfg: RunConfig, logits: dict) -> None:
    """A diverged model must fail, not be stored as inf / NaN (or beyond the store's float16)."""
    for name in ("test", "train", "features"):
        worst = float(logits[name].abs().max()) if logits[name].numel() else 0.0
        if not np.isfinite(worst) or worst > F16_MAX:
            raise NonFiniteOutputError(
                f"run {cfg.label} ({cfg.hash}): its {name} {'features' if name == 'features' else 'logits'} reach "
                f"{worst:.3g}, beyond float16 (the store's format, max {F16_MAX:g}): the model diverged although its "
                f"mean training loss stayed finite; lower train.lr (now {cfg.train['lr']}) or add warm-up epochs")


def run_metrics(cfg: RunConfig, logits: dict, data: DataBundle, teacher: Optional[TeacherArtifacts],
                spec: Optional[dict]) -> tuple[dict, dict]:
    """(outputs to store, metrics). Metrics come from the float16 outputs as stored, so recomputing them
    later gives the same numbers."""
    outputs = {"test_logits": _f16(logits["test"]), "features": _f16(logits["features"])}
    test16, feats16 = outputs["test_logits"].astype(np.float32), outputs["features"].astype(np.float32)
    y_test = data.y_test.numpy()
    if cfg.is_student:
        m = functional_metrics(test16, teacher.test_logits, y_test, student_features=feats16,
                               teacher_features=teacher.features)
    else:
        m = functional_metrics(test16, None, y_test)
        outputs["test_labels"] = y_test.astype(np.int16)
    m["train_accuracy"] = float((logits["train"].argmax(1) == data.y_train).float().mean())
    m["generalisation_gap"] = 100.0 * (m["train_accuracy"] - m["accuracy"])
    if spec is not None:
        outputs["backdoor_logits"] = _f16(logits["triggered"])
        m.update(backdoor_metrics(outputs["backdoor_logits"].astype(np.float32), test16, y_test, spec["target"]))
    return outputs, m


def run_provenance(dev: torch.device, res, data: DataBundle, nondeterministic: list, cfg: RunConfig) -> dict:
    """Code and package versions, device, time, the arithmetic it trained in, per-epoch losses, the data's
    fingerprints, determinism."""
    prov = provenance(dev, res.seconds)
    prov["precision"] = precision_used(dev, cfg.train["precision"], data.x_train.dim() == 4)
    prov.update({"finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "epochs": res.epoch_log,
                 "data": {**data.summary(), "fingerprint": data.fingerprint, "test_fingerprint": data.test_fingerprint},
                 "cpu_threads": CPU_THREADS if dev.type == "cpu" else None,
                 "gpu_utilisation": _mean([e["gpu_util"] for e in res.epoch_log if "gpu_util" in e]),
                 "bitwise_reproducible": dev.type == "cpu" and not nondeterministic,
                 "nondeterminism": nondeterministic + (["bf16 autocast and cuDNN/cuBLAS kernels on CUDA"]
                                                       if dev.type == "cuda" else [])})
    return prov


def run_and_store(cfg: RunConfig, store, device="auto",
                  on_epoch: Optional[Callable[[int, int], None]] = None) -> dict:
    """Train one run (its teacher must be in the store), write it, return its metrics."""
    teacher = None
    if cfg.is_student:
        need_logits, need_model = teacher_needs(cfg)
        teacher = TeacherArtifacts.from_store(store, cfg.teacher_hash, need_logits, need_model)
    started = time.perf_counter()
    record = execute_run(cfg, device, teacher, on_epoch)
    record.provenance["wall_seconds"] = round(time.perf_counter() - started, 3)
    store.write(record)
    return record.metrics

