"""The backdoored teacher: poisoning (image patch, text trigger token), triggered evaluation, and students
that never see poisoned data."""
import numpy as np
import pytest
import torch

from kdlib import ConfigError, load_study
from kdlib import backdoor as bd
from kdlib.book.claims import NOT_SUPPORTED, NOT_TESTED, SUPPORTED, verdicts
from kdlib.data import load_dataset
from kdlib.evaluate import predict
from kdlib.executors import LocalExecutor
from kdlib.jobs import collect_jobs
from kdlib.metrics import backdoor_metrics
from kdlib.store import RunStore
from kdlib.train import build_for_data

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
    with pytest.raises(ConfigError, match="images or token sequences"):
        load_study().setup("vowels-seqcnn-self", "smoke", backdoor=SPEC)
    text = bd.check_spec({"target": 1}, 2, (200,), "text", vocab_size=1000)
    assert text == {"target": 1, "poison_fraction": 0.1, "position": 0, "token": 999}
    with pytest.raises(ConfigError, match="padding"):
        bd.check_spec({"token": 0}, 2, (200,), "text", vocab_size=1000)
    with pytest.raises(ConfigError, match=r"position must be an integer in \[0, 199\]"):
        bd.check_spec({"position": 200}, 2, (200,), "text", vocab_size=1000)


def test_image_poisoning():
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


def test_text_trigger_token():
    x = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [3, 4, 5, 6]])
    y = torch.tensor([0, 0, 1])
    spec = {"target": 1, "poison_fraction": 1.0, "token": 42, "position": 1}
    xp, yp, idx = bd.poison(x, y, spec, seed=0)
    assert idx.tolist() == [0, 1] and (xp[idx, 1] == 42).all() and (yp[idx] == 1).all()
    assert torch.equal(xp[2], x[2]) and torch.equal(xp[0, [0, 2, 3]], x[0, [0, 2, 3]])
    trig = bd.triggered_test(x, y, x, spec)
    assert trig.tolist() == [[5, 42, 7, 0], [8, 42, 0, 0]]


def test_backdoor_metrics_hand():
    target = 1
    triggered = np.eye(3)[[1, 1, 2, 1]]  # 3 of 4 triggered inputs go to the target
    labels = np.array([0, 0, 1, 2, 2])
    clean = np.eye(3)[[1, 0, 1, 2, 2]]  # non-target rows: 0, 0, 2, 2 -> predictions 1, 0, 2, 2
    m = backdoor_metrics(triggered, clean, labels, target)
    assert m["backdoor_asr"] == 0.75 and m["backdoor_clean_rate"] == 0.25 and m["backdoor_lift"] == 0.5


def test_backdoor_setup_runs_and_students_see_clean_data(tmp_path):
    study = load_study()
    clean = study.setup("mnist5k-lenet-standard", "smoke", n_seeds=1, kd_weight_variants=[])
    poisoned = study.setup("mnist5k-lenet-standard", "smoke", n_seeds=1, backdoor=SPEC, kd_weight_variants=[])
    store = RunStore(tmp_path)
    report = LocalExecutor("cpu").run(collect_jobs([("p", poisoned), ("c", clean)]), store)
    assert not report.failed
    for arm in ("control", "kd", "rcd"):
        assert {"backdoor_asr", "backdoor_lift", "backdoor_clean_rate"} <= set(store.metrics(poisoned.run_config(arm, 0)))
    t = poisoned.teacher_run(0)
    assert store.metrics(t)["backdoor_asr"] >= 0
    # the stored triggered-input logits reproduce the stored backdoor metrics
    data = load_dataset(poisoned.dataset, **poisoned.data_args)
    kd = poisoned.run_config("kd", 0)
    again = backdoor_metrics(store.backdoor_logits(kd), store.test_logits(kd), data.y_test.numpy(), SPEC["target"])
    assert again == pytest.approx({k: store.metrics(kd)[k] for k in again})
    # the teacher's stored KD targets are its outputs on the *clean* training inputs
    teacher = build_for_data(poisoned.teacher, data, t.init_seed)
    teacher.load_state_dict(store.model_state(t))
    np.testing.assert_allclose(predict(teacher, data.x_train, 1024, torch.device("cpu")).numpy(),
                               store.train_logits(t), rtol=1e-5, atol=1e-5)
    # the control never sees poisoned data: it equals the control of the clean setup
    np.testing.assert_array_equal(store.test_logits(poisoned.run_config("control", 0)),
                                  store.test_logits(clean.run_config("control", 0)))
    assert poisoned.teacher_run(0).hash != clean.teacher_run(0).hash


def _summary(transfers):
    from tests.test_claims import summary

    return {**summary("b"), "id": "b", "has_backdoor": True, "backdoor_transfers": transfers, "teacher_backdoor_asr": 0.9,
            "control_backdoor_asr": 0.05, "kd_backdoor_asr": 0.3, "rcd_backdoor_asr": 0.05,
            "backdoor_kd_vs_control_p_by": 0.01, "control_backdoor_lift": 0.0, "teacher_backdoor_lift": 0.85,
            "kd_backdoor_lift": 0.2 if transfers else 0.0, "backdoor_lift_kd_vs_control_p_by": 0.02 if transfers else 0.7,
            "backdoor_lift_transfers": transfers, "significant_transfer": False, "backdoor_lift_testable": True,
            "teacher_hashes": ["t"], "control_hashes": ["c"], "kd_hashes": ["k"]}


def test_claim7_flips():
    v = lambda s: verdicts(s).set_index("claim").loc[7, "verdict"]  # noqa: E731
    assert v([_summary(True)]) == SUPPORTED
    assert v([_summary(False)]) == NOT_SUPPORTED
    assert v([{**_summary(False), "has_backdoor": False}]) == NOT_TESTED
    # a student only biased towards the target class (high attack success, no lift) does not count
    assert v([{**_summary(False), "kd_backdoor_asr": 0.6}]) == NOT_SUPPORTED
    # a teacher that never learned its backdoor leaves the claim untested
    assert v([{**_summary(True), "teacher_backdoor_lift": 0.1}]) == NOT_TESTED
