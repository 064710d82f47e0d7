"""The trainer: pairing (alpha = 0 reproduces the control exactly), determinism, errors, variants."""
import pytest
import torch

from kdlib import load_study
from kdlib.config import ModelSpec
from kdlib.data import load_dataset
from kdlib.runner import run_one, run_setup
from kdlib.store import RunStore
from kdlib.train import NonFiniteLossError, _crop, random_crop_flip, train


@pytest.fixture(scope="module")
def study():
    return load_study()


def test_alpha_zero_kd_and_rcd_train_to_the_control_weights(study, tmp_path):
    setup = study.setup("digits-mlp-self", "smoke", alpha=0.0, n_seeds=1)
    data = load_dataset(setup.dataset, **setup.data_args)
    store = RunStore(tmp_path)
    run_one(setup, "teacher", 0, store, "cpu", progress=None)
    t_logits = store.train_logits(setup.teacher_run(0))
    models = {}
    for arm in ("control", "kd", "rcd"):
        res = train(setup.run(arm, 0), data, "cpu", teacher_train_logits=t_logits, progress=None)
        models[arm] = res
    for arm in ("kd", "rcd"):
        for (k, a), b in zip(models["control"].model.state_dict().items(), models[arm].model.state_dict().values()):
            assert torch.equal(a, b), f"{arm}: {k} differs from the control"
        assert torch.equal(models[arm].test_logits, models["control"].test_logits)
    # with alpha > 0 they do differ (the test above is not vacuous)
    kd = train(study.setup("digits-mlp-self", "smoke", n_seeds=1).run("kd", 0), data, "cpu",
               teacher_train_logits=t_logits, progress=None)
    assert not torch.equal(kd.test_logits, models["control"].test_logits)


def test_same_config_twice_gives_identical_metrics(study, tmp_path):
    setup = study.setup("vowels-seqcnn-self", "smoke", n_seeds=1)
    a = run_setup(setup, RunStore(tmp_path / "a"), "cpu", progress=None)
    b = run_setup(setup, RunStore(tmp_path / "b"), "cpu", progress=None)
    cols = ["accuracy", "loss", "agreement", "js_divergence", "neg_agreement"]
    assert a[["arm"] + cols].equals(b[["arm"] + cols])


def test_student_sees_a_different_order_and_teacher_init(study, tmp_path):
    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1)
    data = load_dataset(setup.dataset, **setup.data_args)
    teacher_init = setup.run("teacher", 0).init_seed
    assert setup.run("control", 0).init_seed == teacher_init
    t = train(setup.run("teacher", 0), data, "cpu", progress=None)
    c = train(setup.run("control", 0), data, "cpu", progress=None)
    assert not torch.equal(t.test_logits, c.test_logits)  # different data order -> different function


def test_non_finite_loss_stops_with_the_run_and_epoch(study):
    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1, lr=1e30, optimizer="sgd")
    data = load_dataset(setup.dataset, **setup.data_args)
    with pytest.raises(NonFiniteLossError, match=r"digits-mlp-self/teacher/seed0 .*non-finite loss .* at epoch 1"):
        train(setup.run("teacher", 0), data, "cpu", progress=None)


def test_progress_is_plain_text(study):
    setup = study.setup("vowels-seqcnn-self", "smoke", n_seeds=1, epochs=2)
    data = load_dataset(setup.dataset, **setup.data_args)
    lines = []
    train(setup.run("teacher", 0), data, "cpu", progress=lines.append)
    assert len(lines) == 2 and "epoch 2/2" in lines[1] and "loss" in lines[1]


@pytest.mark.parametrize("variant,args", [
    ("fitnets", {"student_layer": "layer2", "teacher_layer": "layer2", "beta": 1.0}),
    ("attention", {"student_layer": "layer3", "teacher_layer": "layer3", "beta": 100.0}),
])
def test_feature_variants_train_with_hooks(study, tmp_path, variant, args):
    setup = study.setup("digits-mlp-standard", "smoke", n_seeds=1, epochs=1, variant=variant, variant_args=args)
    from dataclasses import replace
    setup = replace(setup, teacher=ModelSpec("resnet", {"depth": 8, "width": 8}),
                    student=ModelSpec("resnet", {"depth": 8, "width": 4}))
    store = RunStore(tmp_path)
    for arm in ("kd", "rcd"):
        m = run_one(setup, arm, 0, store, "cpu", progress=None)
        assert 0.0 <= m["agreement"] <= 1.0
    assert len(store.hashes()) == 3  # teacher, kd, rcd


def test_bad_feature_layer_is_named(study, tmp_path):
    from dataclasses import replace
    setup = study.setup("digits-mlp-standard", "smoke", n_seeds=1, epochs=1, variant="attention",
                        variant_args={"student_layer": "layer9", "teacher_layer": "layer3"})
    setup = replace(setup, teacher=ModelSpec("resnet", {"depth": 8, "width": 8}),
                    student=ModelSpec("resnet", {"depth": 8, "width": 4}))
    with pytest.raises(ValueError, match=r"no module named 'layer9'.*layer1"):
        run_one(setup, "kd", 0, RunStore(tmp_path), "cpu", progress=None)


def test_augmented_setup_distils_from_the_live_teacher(study, tmp_path):
    from dataclasses import replace
    setup = study.setup("digits-mlp-standard", "smoke", n_seeds=1, epochs=1, augment=True)
    setup = replace(setup, teacher=ModelSpec("lenet"), student=ModelSpec("lenet", {"width": 0.5}))
    m = run_one(setup, "kd", 0, RunStore(tmp_path), "cpu", progress=None)
    assert 0.0 <= m["accuracy"] <= 1.0


def test_crop_and_flip():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(4)[None] + torch.tensor([1, 0])[:, None])[:, None, :, None].expand(2, 1, 4, 4)
    cols = (torch.arange(4)[None] + torch.tensor([1, 2])[:, None])[:, None, None, :].expand(2, 1, 4, 4)
    out = _crop(xp, rows, cols)
    assert torch.equal(out[0], x[0])  # offset (1, 1) with padding 1 is the identity
    assert torch.equal(out[1, 0, 1:, :3], x[1, 0, :3, 1:])  # shifted by one row down, one column left
    g = torch.Generator().manual_seed(0)
    y = random_crop_flip(torch.randn(16, 3, 8, 8), g, pad=2)
    assert y.shape == (16, 3, 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_path_matches_cpu_closely(study, tmp_path):
    setup = study.setup("digits-mlp-self", "smoke", n_seeds=1)
    data = load_dataset(setup.dataset, **setup.data_args)
    cpu = train(setup.run("teacher", 0), data, "cpu", progress=None)
    gpu = train(setup.run("teacher", 0), data, "cuda", progress=None)
    assert (cpu.test_logits.argmax(1) == gpu.test_logits.argmax(1)).float().mean() > 0.9


def test_paper_setups_at_smoke_scale_on_the_local_cifar_copy(study, tmp_path):
    """The paper-scale code path (CIFAR-10, ResNets, augmentation on the device, FitNets) on 256 images."""
    from tests.conftest import shared_file

    shared_file("cifar10-jpeg.tar.gz")
    store = RunStore(tmp_path)
    resnet = study.setup("cifar10-resnet18-self", "smoke", n_seeds=1, augment=True)
    m = run_one(resnet, "kd", 0, store, "cpu", progress=None)
    assert 0 <= m["agreement"] <= 1 and m["n_teacher_correct"] + m["n_teacher_wrong"] == 256
    fit = study.setup("cifar10-resnet56-resnet20-fitnets", "smoke", n_seeds=1)
    m = run_one(fit, "rcd", 0, store, "cpu", progress=None)
    assert 0 <= m["accuracy"] <= 1
