"""The trainer and evaluation: pairing (w = 0 reproduces the control exactly), determinism whatever ran
before and whatever the caller's thread count, targets that line up with their batch, errors, variants."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from kdlib import load_study
from kdlib.arms import build_arm
from kdlib.config import ModelSpec
from kdlib.data import load_dataset
from kdlib.evaluate import cka_rows, evaluate, predict
from kdlib.executors import LocalExecutor
from kdlib.jobs import collect_jobs
from kdlib.runner import execute_run, load_run_data
from kdlib.store import RunStore
from kdlib.train import NonFiniteLossError, _crop, lr_at, random_crop_flip, resolve_device, train
from kdlib.book.frames import run_table

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def study():
    return load_study()


def _train(cfg, data, teacher=None, **kw):
    arm = build_arm(cfg, len(data.y_train), data.n_classes)
    return train(cfg, data, arm, CPU, teacher_logits=None if teacher is None else torch.as_tensor(teacher), **kw)


def test_weight_zero_kd_and_rcd_train_to_the_control_weights(study):
    setup = study.setup("digits-mlp-self", "smoke", kd_weight=0.0, n_seeds=1)
    data = load_dataset(setup.dataset, **setup.data_args)
    teacher = execute_run(setup.teacher_run(0), "cpu")
    models = {arm: _train(setup.run_config(arm, 0), data, teacher.train_logits).model for arm in ("control", "kd", "rcd")}
    for arm in ("kd", "rcd"):
        for (k, a), b in zip(models["control"].state_dict().items(), models[arm].state_dict().values()):
            assert torch.equal(a, b), f"{arm}: {k} differs from the control"
    kd = _train(study.setup("digits-mlp-self", "smoke", n_seeds=1).run_config("kd", 0), data, teacher.train_logits)
    x = data.x_test
    assert not torch.equal(predict(kd.model, x, 512, CPU), predict(models["control"], x, 512, CPU))  # not vacuous


def test_teacher_targets_line_up_with_the_batch(study, monkeypatch):
    """Each batch's KD targets are the teacher logits of exactly the examples in that batch."""
    import kdlib.arms as arms_mod

    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1, epochs=2)
    data = load_dataset(setup.dataset, **setup.data_args)
    table = torch.randn(len(data.y_train), data.n_classes)  # distinct targets per example
    row_of = {tuple(r.tolist()): i for i, r in enumerate(data.x_train.flatten(1))}
    seen = []
    real = arms_mod.TeacherLogits.__call__

    def spy(self, batch):
        out = real(self, batch)
        rows = [row_of[tuple(r.tolist())] for r in batch.x.flatten(1)]
        seen.append(torch.equal(out, table[rows]))
        return out

    monkeypatch.setattr(arms_mod.TeacherLogits, "__call__", spy)
    _train(setup.run_config("kd", 0), data, table)
    assert len(seen) > 4 and all(seen)


def test_same_config_twice_gives_identical_metrics(study, tmp_path):
    setup = study.setup("vowels-seqcnn-self", "smoke", n_seeds=1)
    for name in ("a", "b"):
        LocalExecutor("cpu").run(collect_jobs([("v", setup)]), RunStore(tmp_path / name))
    a, b = run_table(RunStore(tmp_path / "a"), setup), run_table(RunStore(tmp_path / "b"), setup)
    cols = ["arm", "accuracy", "loss", "agreement", "js_divergence", "neg_agreement", "cka"]
    assert len(a) == len(setup.runs()) and a[cols].equals(b[cols])


def test_results_do_not_depend_on_what_ran_before_or_the_callers_threads(study):
    """A feature-variant run (a learned regressor) is bitwise identical after other random draws in the
    process and under another caller thread setting: training fixes its own threads."""
    setup = study.setup("mnist5k-lenet-standard", "smoke", n_seeds=1, epochs=1, variant="fitnets",
                        variant_args={"student_layer": "features.3", "teacher_layer": "features.3"})
    teacher = execute_run(setup.teacher_run(0), "cpu").teacher_artifacts()
    outs = []
    before = torch.get_num_threads()
    try:
        for seed, threads in ((1, 1), (2, 2)):
            torch.manual_seed(seed)
            torch.randn(1000)
            torch.set_num_threads(threads)
            outs.append(execute_run(setup.run_config("kd", 0), "cpu", teacher).outputs["test_logits"])
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_students_start_from_the_teachers_initial_weights_in_self_distillation(study):
    from kdlib.train import build_for_data

    setup = study.setup("mnist5k-lenet-self", "smoke", n_seeds=2)
    data = load_dataset(setup.dataset, **setup.data_args)

    def init(cfg):
        return build_for_data(cfg.model, data, cfg.init_seed).state_dict()

    teacher, control, kd = (init(setup.run_config(a, 1)) for a in ("teacher", "control", "kd"))
    other = init(setup.run_config("control", 0))
    assert all(torch.equal(teacher[k], control[k]) and torch.equal(teacher[k], kd[k]) for k in teacher)
    assert not all(torch.equal(teacher[k], other[k]) for k in teacher)  # another seed: another init
    std = study.setup("mnist5k-lenet-standard", "smoke", n_seeds=2)
    a, b = init(std.run_config("control", 1)), init(std.run_config("kd", 1))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], v) for k, v in init(std.run_config("control", 0)).items())


def test_student_sees_a_different_order_and_teacher_init(study):
    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1)
    data = load_dataset(setup.dataset, **setup.data_args)
    assert setup.run_config("control", 0).init_seed == setup.run_config("teacher", 0).init_seed
    t = _train(setup.run_config("teacher", 0), data).model
    c = _train(setup.run_config("control", 0), data).model
    assert not torch.equal(predict(t, data.x_test, 512, CPU), predict(c, data.x_test, 512, CPU))


def test_non_finite_loss_stops_with_the_run_and_epoch(study):
    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1, lr=1e30, optimizer="sgd")
    data = load_dataset(setup.dataset, **setup.data_args)
    with pytest.raises(NonFiniteLossError, match=r"digits-mlp-self/teacher/seed0 .*non-finite loss .* at epoch 1"):
        _train(setup.run_config("teacher", 0), data)


def test_epoch_log_keeps_each_loss_term(study):
    setup = study.setup("vowels-seqcnn-self", "smoke", n_seeds=1, epochs=2)
    data = load_dataset(setup.dataset, **setup.data_args)
    teacher = execute_run(setup.teacher_run(0), "cpu")
    log = _train(setup.run_config("kd", 0), data, teacher.train_logits).epoch_log
    assert [e["epoch"] for e in log] == [1, 2] and {"loss", "ce", "kd", "seconds"} <= set(log[0])
    w, t = setup.kd_weight, setup.temperature  # the logged total is the weighted sum of the logged terms
    assert log[0]["loss"] == pytest.approx((1 - w) * log[0]["ce"] + w * t * t * log[0]["kd"], rel=1e-5)
    assert set(teacher.provenance["epochs"][0]) == {"epoch", "loss", "ce", "seconds"}


def test_evaluate_gives_logits_and_penultimate_features(study):
    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1)
    data = load_dataset(setup.dataset, **setup.data_args)
    model = _train(setup.run_config("teacher", 0), data).model
    rows = cka_rows(len(data.y_test), 50)
    out = evaluate(model, {"train": data.x_train, "test": data.x_test}, CPU, 64, rows)
    assert out["train"].shape == (len(data.y_train), 10) and out["test"].shape == (len(data.y_test), 10)
    assert out["features"].shape == (50, 128)  # the MLP's hidden layer feeds its classifier
    # the features are the classifier's input: applying the head to them gives the logits
    np.testing.assert_allclose(model.head(out["features"]).detach().numpy(), out["test"][rows].numpy(), rtol=1e-5, atol=1e-5)
    assert np.array_equal(cka_rows(len(data.y_test), 50), rows) and len(set(rows)) == 50


def test_learning_rate_schedules():
    assert lr_at(0, 10, 2, 1.0) == 0.5 and lr_at(1, 10, 2, 1.0) == 1.0  # linear warm-up
    assert lr_at(2, 10, 2, 1.0) == pytest.approx(1.0) and lr_at(6, 10, 2, 1.0) == pytest.approx(0.5)  # cosine
    assert lr_at(9, 10, 0, 1.0, "constant") == 1.0
    assert lr_at(6, 10, 2, 1.0, "onecycle") == pytest.approx(0.5) and lr_at(10, 10, 2, 1.0, "onecycle") == 0.0


@pytest.mark.parametrize("variant,args", [
    ("fitnets", {"student_layer": "layer2", "teacher_layer": "layer2", "beta": 1.0}),
    ("attention", {"student_layer": "layer3", "teacher_layer": "layer3", "beta": 100.0}),
])
def test_feature_variants_train_with_hooks(study, tmp_path, variant, args):
    setup = study.setup("digits-mlp-standard", "smoke", n_seeds=1, epochs=1, variant=variant, variant_args=args)
    setup = replace(setup, teacher=ModelSpec("resnet", {"depth": 8, "width": 8}),
                    student=ModelSpec("resnet", {"depth": 8, "width": 4}))
    store = RunStore(tmp_path)
    jobs = [j for j in collect_jobs([("x", setup)]) if j.cfg.arm in ("teacher", "kd", "rcd") and j.cfg.kd_weight in (None, 0.9)
            and j.cfg.rcd_noise in (None, "unit_fixed")]
    report = LocalExecutor("cpu").run(jobs, store)
    assert not report.failed and len(store.hashes()) == 3
    m = store.metrics(setup.run_config("kd", 0))
    assert 0.0 <= m["agreement"] <= 1.0
    log = store.provenance(setup.run_config("rcd", 0))["epochs"][0]
    assert "feature" in log and log["feature"] > 0


def test_augmented_setup_distils_from_the_live_teacher(study, tmp_path):
    setup = study.setup("digits-mlp-standard", "smoke", n_seeds=1, epochs=1, augment=True)
    setup = replace(setup, teacher=ModelSpec("lenet"), student=ModelSpec("lenet", {"width": 0.5}))
    teacher = execute_run(setup.teacher_run(0), "cpu").teacher_artifacts()
    assert teacher.model_state is not None
    m = execute_run(setup.run_config("kd", 0), "cpu", teacher).metrics
    assert 0.0 <= m["accuracy"] <= 1.0
    with pytest.raises(ValueError, match="needs the teacher model"):
        execute_run(setup.run_config("kd", 0), "cpu", replace(teacher, model_state=None))


def test_student_refuses_teacher_logits_from_other_data(study):
    from kdlib.runner import DataMismatchError

    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1)
    teacher = execute_run(setup.teacher_run(0), "cpu").teacher_artifacts()
    with pytest.raises(DataMismatchError, match=r"fingerprint .* but this run's training data has fingerprint"):
        execute_run(setup.run_config("kd", 0), "cpu", replace(teacher, fingerprint="0" * 64))


@pytest.fixture(scope="module")
def digits_teacher(study):
    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1)
    return setup, execute_run(setup.teacher_run(0), "cpu").teacher_artifacts()


def test_teacher_artifacts_carry_both_fingerprints_and_accuracy(digits_teacher):
    setup, teacher = digits_teacher
    data = load_run_data(setup.teacher_run(0))
    assert teacher.fingerprint == data.fingerprint and teacher.test_fingerprint == data.test_fingerprint
    assert teacher.accuracy == pytest.approx(float((teacher.test_logits.argmax(1) == data.y_test.numpy()).mean()))
    teacher.check_against("ok", data)  # its own data passes


@pytest.mark.parametrize("change, message", [
    ({"test_fingerprint": "0" * 64}, r"test data with fingerprint 0+, but this run's test data"),
    ({"fingerprint": None}, r"no stored training-set fingerprint"),
    ({"test_fingerprint": None}, r"no stored test-set fingerprint"),
])
def test_student_refuses_teacher_with_other_or_missing_fingerprint(digits_teacher, change, message):
    from kdlib.runner import DataMismatchError

    setup, teacher = digits_teacher
    with pytest.raises(DataMismatchError, match=message):
        replace(teacher, **change).check_against("kd", load_run_data(setup.teacher_run(0)))


def test_student_refuses_row_permuted_teacher_test_logits(digits_teacher):
    from kdlib.runner import DataMismatchError

    setup, teacher = digits_teacher
    perm = np.random.default_rng(0).permutation(len(teacher.test_logits))
    with pytest.raises(DataMismatchError, match="rows permuted or replaced"):
        execute_run(setup.run_config("kd", 0), "cpu", replace(teacher, test_logits=teacher.test_logits[perm]))


def test_crop_and_flip():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(4)[None] + torch.tensor([1, 0])[:, None])[:, None, :, None].expand(2, 1, 4, 4)
    cols = (torch.arange(4)[None] + torch.tensor([1, 2])[:, None])[:, None, None, :].expand(2, 1, 4, 4)
    out = _crop(xp, rows, cols)
    assert torch.equal(out[0], x[0])  # offset (1, 1) with padding 1 is the identity
    assert torch.equal(out[1, 0, 1:, :3], x[1, 0, :3, 1:])  # shifted by one row down, one column left
    g = torch.Generator().manual_seed(0)
    assert random_crop_flip(torch.randn(16, 3, 8, 8), g, pad=2).shape == (16, 3, 8, 8)


def test_devices_are_checked():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="unknown device 'gpu'; allowed: auto, cpu, cuda"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available here"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_path_matches_cpu_closely(study):
    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1)
    cpu = execute_run(setup.teacher_run(0), "cpu")
    gpu = execute_run(setup.teacher_run(0), "cuda")
    assert (cpu.outputs["test_logits"].argmax(1) == gpu.outputs["test_logits"].argmax(1)).mean() > 0.9
    assert gpu.provenance["nondeterminism"]


def test_paper_code_path_on_the_local_cifar_copy(study, tmp_path):
    """CIFAR-10, a ResNet, augmentation on the device and FitNets, on 256 images of the local JPEG copy."""
    from tests.conftest import shared_file

    shared_file("cifar10-jpeg.tar.gz")
    setup = study.setup("cifar10-resnet56-resnet20", "smoke", n_seeds=1, variant="fitnets",
                        variant_args={"student_layer": "layer2", "teacher_layer": "layer2"}, augment=True,
                        data_args={"source": "jpeg", "n_train": 256, "n_test": 256})
    teacher = execute_run(setup.teacher_run(0), "cpu").teacher_artifacts()
    for arm in ("kd", "rcd"):
        m = execute_run(setup.run_config(arm, 0), "cpu", teacher).metrics
        assert 0 <= m["agreement"] <= 1 and m["n_teacher_correct"] + m["n_teacher_wrong"] == 256
