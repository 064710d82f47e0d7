"""Checks that need a CUDA device (skipped without one; `benchmarks/gpu_check` runs them on a GPU):
the CUDA path agrees with the CPU, kd and rcd at KD weight 0 equal the control exactly, a run repeats,
and the provenance says what is not bitwise reproducible."""
import numpy as np
import pytest
import torch

from kdlib import load_study
from kdlib.runner import execute_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


@pytest.fixture(scope="module")
def setup():
    return load_study().setup("digits-mlp-self", "smoke", n_seeds=1, epochs=3, kd_weight=0.0)


def test_cuda_path_matches_cpu_closely(setup):
    cpu = execute_run(setup.teacher_run(0), "cpu")
    gpu = execute_run(setup.teacher_run(0), "cuda")
    assert (cpu.outputs["test_logits"].argmax(1) == gpu.outputs["test_logits"].argmax(1)).mean() > 0.9
    assert gpu.provenance["device"].startswith("cuda") and gpu.provenance["nondeterminism"]


def test_weight_zero_kd_and_rcd_equal_the_control_on_cuda(setup):
    teacher = execute_run(setup.teacher_run(0), "cuda").teacher_artifacts()
    out = {arm: execute_run(setup.run_config(arm, 0), "cuda", teacher).outputs["test_logits"]
           for arm in ("control", "kd", "rcd")}
    np.testing.assert_array_equal(out["kd"], out["control"])
    np.testing.assert_array_equal(out["rcd"], out["control"])


def test_a_cuda_run_repeats(setup):
    a = execute_run(setup.teacher_run(0), "cuda")
    b = execute_run(setup.teacher_run(0), "cuda")
    np.testing.assert_array_equal(a.outputs["test_logits"], b.outputs["test_logits"])


def test_a_conv_net_trains_on_cuda_with_channels_last_and_bf16():
    setup = load_study().setup("cifar10-mid-self", "smoke", n_seeds=1, data_args={"source": "auto"})
    try:
        rec = execute_run(setup.teacher_run(0), "cuda")
    except Exception as e:  # no CIFAR-10 copy on this machine
        pytest.skip(f"CIFAR-10 not available: {e}")
    assert np.isfinite(rec.outputs["test_logits"].astype(np.float32)).all()
    assert rec.provenance["epochs"][-1].get("gpu_util") is None or rec.provenance["epochs"][-1]["gpu_util"] >= 0
