"""`--reproduce N`: stored runs trained again in memory and compared with the store bit for bit."""
import numpy as np
import pytest

from kdlib.driver import main as driver_main
from kdlib.reproduce import environment_differences, machine_kind, pick_runs, reproduce_entry, summary
from kdlib.runner import execute_run
from kdlib.store import RunStore
from tests.conftest import VOWELS_ENTRY

ENTRY = [a for a in VOWELS_ENTRY if a not in ("--workers", "1")]


def test_stored_runs_come_back_bit_for_bit_and_the_store_is_only_read(vowels_results, capsys):
    runs = vowels_results / "runs"
    before = sorted((p.relative_to(runs), p.stat().st_mtime_ns) for p in runs.rglob("*"))
    assert driver_main(ENTRY + ["--results", str(vowels_results), "--reproduce", "3"]) == 0
    out = capsys.readouterr().out
    assert "reproduce: 3 of 3 run(s) identical bit for bit" in out
    assert out.count("identical bit for bit (every output array and metric)") == 3
    assert sorted((p.relative_to(runs), p.stat().st_mtime_ns) for p in runs.rglob("*")) == before


def test_a_slim_teachers_students_learn_from_the_teacher_trained_again(vowels_copy, vowels_setup):
    """A shipped store keeps no training logits or weights: the kd student needs the teacher's, so it learns
    from the teacher retrained here, and still comes back bit for bit."""
    store = RunStore(vowels_copy / "runs")
    teacher = vowels_setup.teacher_run(0)
    for extra in ("train_logits.npy", "model.pt"):
        (store.path(teacher) / extra).unlink(missing_ok=True)
    assert not store.has_teacher_extras(teacher)
    results = reproduce_entry(vowels_setup, store, 2, "cpu", log=lambda m: None)
    assert [c.label for c in results] == [r.label for r in pick_runs(vowels_setup, 2)]
    assert [r.arm for r in pick_runs(vowels_setup, 2)] == ["teacher", "kd"]
    assert all(c.identical for c in results), [c.line() for c in results]
    # a teacher that cannot train here leaves its kd student nothing to learn from: both named, neither compared
    def teacher_fails(cfg, device, teacher):
        if cfg.arm == "teacher":
            raise RuntimeError("no such file\nsecond line")
        return execute_run(cfg, device, teacher)

    failed = reproduce_entry(vowels_setup, store, 2, "cpu", log=lambda m: None, execute=teacher_fails)
    assert failed[0].error == "RuntimeError: no such file" and "stored slim" in failed[1].error
    assert summary(failed) == ("reproduce: 0 of 2 run(s) identical bit for bit, 2 not compared", 1)


def _perturbed(device_text=None):
    """execute_run, with the kd run's test logits moved (one class raised) and, optionally, another device."""
    def execute(cfg, device, teacher):
        record = execute_run(cfg, device, teacher)
        if cfg.arm == "kd":
            logits = record.outputs["test_logits"].copy()
            logits[:, 0] += np.float16(5.0)
            record.outputs["test_logits"] = logits
        if device_text:
            record.provenance["device"] = device_text
        return record
    return execute


def test_a_run_that_differs_on_the_same_machine_is_not_reproduced(vowels_results, vowels_setup):
    store = RunStore(vowels_results / "runs")
    teacher, kd = reproduce_entry(vowels_setup, store, 2, "cpu", log=lambda m: None, execute=_perturbed())
    assert teacher.identical and not kd.identical
    assert kd.arrays_differing == ["test_logits"] and kd.max_abs_diff >= 4.9 and kd.prediction_agreement < 1
    assert kd.environment == [] and kd.line().endswith("NOT REPRODUCED")
    text, code = summary([teacher, kd])
    assert code == 1 and "1 of 2 run(s) identical" in text and "1 differ on the same kind of machine" in text


def test_a_run_that_differs_on_other_kernels_says_the_difference_is_expected(vowels_results, vowels_setup):
    store = RunStore(vowels_results / "runs")
    other = "cpu: x86_64, 64 cores, Other CPU, AVX512 kernels, AMX"
    teacher, kd = reproduce_entry(vowels_setup, store, 2, "cpu", log=lambda m: None, execute=_perturbed(other))
    assert teacher.identical  # identical outputs: where it ran does not matter
    stored_kind = machine_kind(store.provenance(kd.hash)["device"])
    assert kd.environment == [f"stored from `{stored_kind}`, here `cpu: x86_64, Other CPU, AVX512 kernels, AMX`"]
    assert kd.line().endswith("the difference may come from that")
    text, code = summary([teacher, kd])
    assert code == 1 and "1 differ where the machine, torch or precision differ (or are not recorded)" in text


def test_what_sets_a_runs_rounding():
    assert machine_kind("cpu: x86_64, 2 cores, AMD EPYC, AVX2 kernels") == "cpu: x86_64, AMD EPYC, AVX2 kernels"
    assert machine_kind("cpu: x86_64, 2 cores") is None  # stored before the kernels were recorded
    assert machine_kind("cuda: NVIDIA H100") == "cuda: NVIDIA H100"
    here = {"device": "cpu: x86_64, 16 cores, AMD EPYC, AVX2 kernels", "packages": {"torch": "2.14.1"},
            "precision": "fp32 (CPU)"}
    same = {**here, "device": "cpu: x86_64, 2 cores, AMD EPYC, AVX2 kernels"}  # the core count does not matter
    assert environment_differences(same, here) == []
    assert environment_differences({**same, "packages": {"torch": "2.13.0"}}, here) == ["torch 2.13.0 then, 2.14.1 here"]
    assert environment_differences({**same, "precision": "bf16 autocast (CPU, AMX)"}, here) == [
        "precision `bf16 autocast (CPU, AMX)` then, `fp32 (CPU)` here"]
    assert "does not name the CPU kernels" in environment_differences({**same, "device": "cpu: x86_64, 2 cores"}, here)[0]
    gpu = {"device": "cuda: NVIDIA H100", "packages": {"torch": "2.14.1"}, "bitwise_reproducible": False,
           "nondeterminism": ["bf16 autocast and cuDNN/cuBLAS kernels on CUDA"]}
    assert environment_differences(gpu, {**gpu, "nondeterminism": []}) == [
        "it was stored as not bitwise reproducible (bf16 autocast and cuDNN/cuBLAS kernels on CUDA)"]


@pytest.mark.parametrize("extra,message", [
    (["--reproduce", "0"], "--reproduce N needs N >= 1 runs per plan entry, got 0"),
    (["--reproduce", "1", "--verify"], "--verify, --seal, --reproduce and --compare-with are separate steps; give one"),
])
def test_bad_reproduce_options_are_one_line(extra, message, tmp_path, capsys):
    assert driver_main(ENTRY + ["--results", str(tmp_path), *extra]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_a_damaged_stored_run_is_named_not_compared(vowels_copy, vowels_setup):
    store = RunStore(vowels_copy / "runs")
    kd = pick_runs(vowels_setup, 2)[1]
    (store.path(kd) / "metrics.json").write_text("{}")  # fails its manifest
    teacher, damaged = reproduce_entry(vowels_setup, store, 2, "cpu", log=lambda m: None)
    assert teacher.identical and damaged.error and "metrics.json" in damaged.error
    assert damaged.line().startswith(f"  {kd.label} ({kd.hash}): NOT COMPARED: ")
