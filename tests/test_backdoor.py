"""The backdoored teacher: poisoning, triggered evaluation, and students that never see poisoned data."""
import numpy as np
import pytest
import torch

from kdlib import ConfigError, load_study
from kdlib import backdoor as bd
from kdlib.claims import NOT_SUPPORTED, NOT_TESTED, SUPPORTED, verdicts
from kdlib.data import load_dataset
from kdlib.metrics import backdoor_metrics
from kdlib.runner import run_one
from kdlib.store import RunStore
from kdlib.train import build_for_data, predict

SPEC = {"target": 0, "poison_fraction": 0.1, "patch": 3}


def test_spec_validation():
    assert bd.check_spec({}, 10) == {"target": 0, "poison_fraction": 0.1, "patch": 3}
    with pytest.raises(ConfigError, match=r"target must be a class index in \[0, 9\], got 10"):
        bd.check_spec({"target": 10}, 10)
    with pytest.raises(ConfigError, match="poison_fraction"):
        bd.check_spec({"poison_fraction": 0}, 10)
    with pytest.raises(ConfigError, match=r"patch must be an integer in \[1, 8\]"):
        bd.check_spec({"patch": 9}, 10, (1, 8, 8))
    with pytest.raises(ConfigError, match="not images"):
        bd.check_spec({}, 2, (200,))
    with pytest.raises(ConfigError, match="unknown backdoor option"):
        bd.check_spec({"colour": 1}, 10)
    with pytest.raises(ConfigError, match="needs images"):
        load_study().setup("imdb-textcnn-self", "smoke", backdoor=SPEC)


def test_poisoning():
    d = load_dataset("digits")
    x, y, idx = bd.poison(d.x_train, d.y_train, SPEC, seed=1)
    others = int((d.y_train != 0).sum())
    assert len(idx) == round(0.1 * others)
    assert (d.y_train[idx] != 0).all() and (y[idx] == 0).all()  # only other classes, relabelled
    assert (x[idx, :, -3:, -3:] == d.x_train.max()).all()  # the trigger
    untouched = torch.ones(len(y), dtype=torch.bool)
    untouched[idx] = False
    assert torch.equal(x[untouched], d.x_train[untouched]) and torch.equal(y[untouched], d.y_train[untouched])
    assert torch.equal(bd.poison(d.x_train, d.y_train, SPEC, seed=1)[2], idx)
    assert not torch.equal(bd.poison(d.x_train, d.y_train, SPEC, seed=2)[2], idx)
    trig = bd.triggered_test(d.x_test, d.y_test, d.x_train, SPEC)
    assert len(trig) == int((d.y_test != 0).sum()) and (trig[:, :, -3:, -3:] == d.x_train.max()).all()


def test_backdoor_metrics_hand():
    target = 1
    triggered = np.eye(3)[[1, 1, 2, 1]]  # 3 of 4 triggered inputs go to the target
    labels = np.array([0, 0, 1, 2, 2])
    clean = np.eye(3)[[1, 0, 1, 2, 2]]  # non-target rows: 0, 0, 2, 2 -> predictions 1, 0, 2, 2
    m = backdoor_metrics(triggered, clean, labels, target)
    assert m["backdoor_asr"] == 0.75 and m["backdoor_clean_rate"] == 0.25 and m["backdoor_lift"] == 0.5


def test_backdoor_setup_runs_and_students_see_clean_data(tmp_path):
    study = load_study()
    clean = study.setup("mnist5k-lenet-standard", "smoke", n_seeds=1)
    poisoned = study.setup("mnist5k-lenet-standard", "smoke", n_seeds=1, backdoor=SPEC)
    store = RunStore(tmp_path)
    for arm in ("control", "kd", "rcd"):
        m = run_one(poisoned, arm, 0, store, "cpu", progress=None)
        assert {"backdoor_asr", "backdoor_lift", "backdoor_clean_rate"} <= set(m)
    t = poisoned.teacher_run(0)
    assert store.metrics(t)["backdoor_asr"] >= 0
    # the stored triggered-input logits reproduce the stored backdoor metrics
    data0 = load_dataset(poisoned.dataset, **poisoned.data_args)
    kd = poisoned.run("kd", 0)
    again = backdoor_metrics(store.backdoor_logits(kd), store.test_logits(kd), data0.y_test.numpy(), SPEC["target"])
    assert again == pytest.approx({k: store.metrics(kd)[k] for k in again})
    # the teacher's stored KD targets are its outputs on the *clean* training inputs
    data = load_dataset(poisoned.dataset, **poisoned.data_args)
    teacher = build_for_data(poisoned.teacher, data, t.init_seed)
    teacher.load_state_dict(store.model_state(t))
    np.testing.assert_allclose(predict(teacher, data.x_train, 1024, torch.device("cpu")).numpy(),
                               store.train_logits(t).numpy(), rtol=1e-5, atol=1e-5)
    # the control never sees poisoned data: it equals the control of the clean setup
    run_one(clean, "control", 0, store, "cpu", progress=None)
    np.testing.assert_array_equal(store.test_logits(poisoned.run("control", 0)), store.test_logits(clean.run("control", 0)))
    assert poisoned.run("teacher", 0).hash != clean.run("teacher", 0).hash


def _summary(transfers):
    return {"id": "b", "has_backdoor": True, "backdoor_transfers": transfers, "teacher_backdoor_asr": 0.9,
            "control_backdoor_asr": 0.05, "kd_backdoor_asr": 0.3, "rcd_backdoor_asr": 0.05,
            "backdoor_kd_vs_control_p_by": 0.01, "control_backdoor_lift": 0.0, "teacher_backdoor_lift": 0.85,
            "kd_backdoor_lift": 0.2 if transfers else 0.0, "backdoor_lift_kd_vs_control_p_by": 0.02 if transfers else 0.7,
            "backdoor_lift_transfers": transfers, "significant_transfer": False,
            "agreement_gain_points": 0.0, "pos_gain_relative": 0.0, "neg_gain_relative": 0.0,
            "kd_beats_rcd_accuracy": True, "dataset": "mnist5k", "teacher_model": "lenet", "student_model": "lenet",
            "teacher_gap": 1.0, "kind": "standard", "alpha": 0.9, "variant": "logit", "agreement_p_by": 1.0}


def test_claim7_flips():
    v = lambda s: verdicts(s).set_index("claim").loc[7, "verdict"]  # noqa: E731
    assert v([_summary(True)]) == SUPPORTED
    assert v([_summary(False)]) == NOT_SUPPORTED
    assert v([{**_summary(False), "has_backdoor": False}]) == NOT_TESTED
    # a student only biased towards the target class (high attack success, no lift) does not count
    assert v([{**_summary(False), "kd_backdoor_asr": 0.6}]) == NOT_SUPPORTED
    # a teacher that never learned its backdoor leaves the claim untested
    weak = v([{**_summary(True), "teacher_backdoor_lift": 0.1}])
    assert weak == NOT_TESTED
