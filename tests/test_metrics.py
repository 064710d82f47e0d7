"""Every metric against a hand-computed case and an independent reference."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax as sp_softmax
from sklearn.metrics import accuracy_score, log_loss

from kdlib import metrics as M

# Two examples, three classes, logits chosen so the probabilities are easy to write down.
LN2, LN3 = math.log(2), math.log(3)
S = np.array([[LN2, 0.0, 0.0], [0.0, 0.0, 0.0]])  # p_S = [1/2, 1/4, 1/4], [1/3, 1/3, 1/3]
T = np.array([[0.0, 0.0, 0.0], [0.0, LN2, 0.0]])  # p_T = [1/3, 1/3, 1/3], [1/4, 1/2, 1/4]
Y = np.array([0, 2])


def test_softmax_and_accuracy_hand():
    np.testing.assert_allclose(M.softmax(S), [[.5, .25, .25], [1 / 3] * 3])
    # argmax of a tie is the first class: student predicts 0, 0; labels 0, 2
    assert M.accuracy(S, Y) == 0.5
    assert M.agreement(S, T) == 0.5  # teacher predicts 0 (tie), 1
    assert M.functional_metrics(S, T, Y)["disagreement"] == 0.5


def test_cross_entropy_hand_and_sklearn():
    expected = -(math.log(0.5) + math.log(1 / 3)) / 2
    assert M.cross_entropy(S, Y) == pytest.approx(expected)
    assert M.cross_entropy(S, Y) == pytest.approx(log_loss(Y, M.softmax(S), labels=[0, 1, 2]))


def test_cross_entropy_uses_the_diagonal_not_a_matrix():
    # gnosis' bug indexed a B x B matrix; with distinct rows the diagonal answer differs from it
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(5, 4)), np.array([0, 1, 2, 3, 0])
    lp = M.log_softmax(z)
    assert M.cross_entropy(z, y) == pytest.approx(-np.mean([lp[i, y[i]] for i in range(5)]))
    assert M.cross_entropy(z, y) != pytest.approx(-lp[:, y].mean())


def test_js_divergence_hand_and_scipy():
    ps, pt = M.softmax(S), M.softmax(T)

    def js(p, q):
        m = (p + q) / 2
        return 0.5 * (np.sum(p * np.log(p / m)) + np.sum(q * np.log(q / m)))

    expected = np.mean([js(ps[i], pt[i]) for i in range(2)])
    assert M.js_divergence(S, T) == pytest.approx(expected)
    ref = np.mean([jensenshannon(ps[i], pt[i]) ** 2 for i in range(2)])  # natural log by default
    assert M.js_divergence(S, T) == pytest.approx(ref)
    assert M.js_divergence(S, S) == pytest.approx(0.0, abs=1e-12)
    assert 0 <= M.js_divergence(S, T) <= math.log(2)


def test_activation_distance_hand():
    d0 = math.sqrt((0.5 - 1 / 3) ** 2 + 2 * (0.25 - 1 / 3) ** 2)
    d1 = math.sqrt(2 * (1 / 3 - 0.25) ** 2 + (1 / 3 - 0.5) ** 2)
    assert M.activation_distance(S, T) == pytest.approx((d0 + d1) / 2)


def test_kl_teacher_student_hand_and_scipy():
    from scipy.stats import entropy

    ps, pt = M.softmax(S), M.softmax(T)
    expected = np.mean([entropy(pt[i], ps[i]) for i in range(2)])  # KL(p_T || p_S)
    assert M.kl_teacher_student(S, T) == pytest.approx(expected)
    hand0 = 3 * (1 / 3) * 0 + (1 / 3) * math.log((1 / 3) / 0.5) + 2 * (1 / 3) * math.log((1 / 3) / 0.25)
    assert entropy(pt[0], ps[0]) == pytest.approx(hand0)


def test_ece_hand():
    # confidences 0.5 (bin 8 of 15: (7/15, 8/15]) wrong... computed by hand below
    logits = np.log(np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.2, 0.8]]))
    y = np.array([0, 1, 0, 1])
    # bins: 0.9 -> (13/15, 14/15]; 0.6 and 0.55 -> (8/15, 9/15]; 0.8 -> (11/15, 12/15]
    # bin 0.9: acc 1, conf .9; bin {.6,.55}: acc .5, conf .575; bin .8: acc 1, conf .8
    expected = 0.25 * 0.1 + 0.5 * abs(0.5 - 0.575) + 0.25 * 0.2
    assert M.expected_calibration_error(logits, y) == pytest.approx(expected)
    # a confidence exactly on a bin edge (0.6 = 9/15) belongs to the lower bin: (8/15, 9/15]
    assert M.expected_calibration_error(np.log([[0.6, 0.4]]), [0]) == pytest.approx(0.4)


def test_transfer_split_hand():
    labels = np.array([0, 1, 2, 0, 1, 2])
    teacher = np.eye(3)[[0, 1, 2, 1, 2, 0]] * 5  # right on 0-2, wrong on 3-5
    student = np.eye(3)[[0, 1, 0, 1, 1, 2]] * 5  # copies 2 right answers, 1 wrong (index 3)
    r = M.transfer_split(student, teacher, labels)
    assert r["n_teacher_correct"] == 3 and r["n_teacher_wrong"] == 3
    assert r["pos_agreement"] == pytest.approx(2 / 3)
    assert r["neg_agreement"] == pytest.approx(1 / 3)
    # student also wrong at index 4 and 5, but with a different wrong label or the right one: not A-
    assert r["n_neg_agree"] == 1


def test_functional_metrics_keys_types_and_references():
    rng = np.random.default_rng(1)
    s, t, y = rng.normal(size=(200, 10)), rng.normal(size=(200, 10)), rng.integers(0, 10, 200)
    out = M.functional_metrics(torch.tensor(s, dtype=torch.float32), t, torch.tensor(y))
    for k in ["accuracy", "loss", "agreement", "disagreement", "js_divergence", "activation_distance",
              "kl_teacher_student", "ece", "pos_agreement", "neg_agreement", "n_teacher_correct", "n_teacher_wrong"]:
        assert k in out
    assert out["accuracy"] == pytest.approx(accuracy_score(y, s.argmax(1)))
    assert out["agreement"] == pytest.approx(accuracy_score(t.argmax(1), s.argmax(1)))
    assert out["n_teacher_correct"] + out["n_teacher_wrong"] == 200
    assert out["loss"] == pytest.approx(log_loss(y, sp_softmax(s, 1), labels=range(10)), rel=1e-5)
    # A+ and A- recombine into the overall agreement
    n_agree = out["n_pos_agree"] + out["n_neg_agree"]
    assert n_agree / 200 == pytest.approx(out["agreement"])


def test_functional_metrics_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="labels"):
        M.functional_metrics(S, T, [0])
    with pytest.raises(ValueError, match="shape"):
        M.functional_metrics(S, T[:, :2], Y)


def test_per_class_hand():
    labels = np.array([0, 0, 1, 1])
    teacher = np.eye(3)[[0, 1, 1, 1]]
    student = np.eye(3)[[0, 0, 2, 1]]
    r = M.per_class(student, teacher, labels, 3)
    np.testing.assert_allclose(r["accuracy"], [1.0, 0.5, np.nan])
    np.testing.assert_allclose(r["agreement"], [0.5, 0.5, np.nan])
