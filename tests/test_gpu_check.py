"""The one-call GPU check runs end to end on the CPU in its tiny mode (smoke-scale models and data), writing
its report and packing its runs: the code path a GPU will take, minus the GPU."""
import json
import subprocess
import sys
import tarfile

from kdlib.paths import REPO_ROOT
from tests.conftest import shared_file


def test_gpu_check_tiny_on_the_cpu(tmp_path):
    shared_file("cifar10-jpeg.tar.gz")
    cmd = [sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check"), "--tiny", "--device", "cpu", "--skip-tests",
           "--out", str(tmp_path / "out"), "--results", str(tmp_path / "results"), "--workers", "1", "--pack",
           "--budget", "600"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(next((tmp_path / "out").glob("gpu_check-*-tiny.json")).read_text())
    assert report["device"].startswith("cpu") and report["scale"] == "smoke"
    models = {(r["model"], r["dataset"]) for r in report["throughput"]}
    assert {("resnet18", "cifar10"), ("vgg19", "cifar10"), ("vit", "cifar10"), ("gpt2_classifier", "imdb_full"),
            ("audio_cnn", "speechcommands")} <= models
    assert all(r["images_per_s"] > 0 and r["epoch_seconds"] > 0 for r in report["throughput"])
    assert 0 <= report["fast_teacher"]["accuracy"] <= 1 and report["fast_teacher"]["recipe"] == "fast"
    sd = report["self_distillation"]
    assert sd["complete_seeds"] == [0, 1] and not sd["failed"] and sd["summary"]["n_seeds"] == 2
    with tarfile.open(tmp_path / "out" / "paper_runs.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("outputs.npz") for n in names) and not any(n.endswith(("model.pt", "train_logits.npy")) for n in names)
