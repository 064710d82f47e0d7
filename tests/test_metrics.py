"""Every metric against a hand-computed case and an independent reference."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax as sp_softmax
from sklearn.metrics import accuracy_score, log_loss, mutual_info_score, normalized_mutual_info_score

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
    logits = np.log(np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.2, 0.8]]))
    y = np.array([0, 1, 0, 1])
    # bins: 0.9 -> (13/15, 14/15]; 0.6 and 0.55 -> (8/15, 9/15]; 0.8 -> (11/15, 12/15]
    # bin 0.9: acc 1, conf .9; bin {.6,.55}: acc .5, conf .575; bin .8: acc 1, conf .8
    expected = 0.25 * 0.1 + 0.5 * abs(0.5 - 0.575) + 0.25 * 0.2
    assert M.expected_calibration_error(logits, y) == pytest.approx(expected)


def _edge_logits(conf, n_classes=16):
    """Logits whose softmax has maximum `conf` on class 0 and the rest spread evenly."""
    p = np.full((len(conf), n_classes), 0.0)
    p[:, 0] = conf
    p[:, 1:] = ((1 - np.asarray(conf)) / (n_classes - 1))[:, None]
    return np.log(p)


def test_ece_bin_edges_belong_to_the_lower_bin():
    # Confidences 2/15 (right), 2/15 + .01 (wrong), 3/15 (wrong), 3/15 + .01 (right); label 0 = right.
    # (i/n, (i+1)/n], as here: {2/15} | {2/15 + .01, 3/15} | {3/15 + .01}
    #   ECE = 1/4 (1 - 2/15) + 1/2 |0 - (5/15 + .01)/2| + 1/4 (1 - .21) = 13/60 + 1/12 + .0025 + .1975 = 0.5
    # [i/n, (i+1)/n) would give {2/15, 2/15 + .01} | {3/15, 3/15 + .01}
    #   ECE = 1/2 |1/2 - (4/15 + .01)/2| + 1/2 |1/2 - (6/15 + .01)/2| = 0.5 (.5 - 2/15 - .005 + .295) = 0.32833..
    conf = np.array([2 / 15, 2 / 15 + 0.01, 3 / 15, 3 / 15 + 0.01])
    logits, y = _edge_logits(conf), np.array([0, 1, 1, 0])
    c = M.softmax(logits).max(1)
    assert c[0] * 15 == 2 and c[2] * 15 == 3  # the edge cases really sit on the float edges
    np.testing.assert_allclose(c, conf, rtol=1e-12)
    assert M.expected_calibration_error(logits, y) == pytest.approx(0.5)
    left_closed = 0.5 * abs(0.5 - (4 / 15 + 0.01) / 2) + 0.5 * abs(0.5 - (6 / 15 + 0.01) / 2)
    assert left_closed == pytest.approx(0.5 * (0.5 - 2 / 15 - 0.005 + 0.295))
    assert abs(left_closed - 0.5) > 0.1
    # one more on the lowest edge, 1/15 (uniform over 15 classes), right: it joins no other bin
    # under (i/n, (i+1)/n]: bin (0, 1/15] with |1 - 1/15|, the rest keep their ECE contributions
    lo = np.zeros((1, 16))
    lo[0, 15] = -np.inf  # 15 equal classes and an impossible one
    assert M.softmax(lo).max() * 15 == 1
    both = np.vstack([lo, logits])
    expected = (1 * (1 - 1 / 15) + 4 * 0.5) / 5
    assert M.expected_calibration_error(both, [0, 0, 1, 1, 0]) == pytest.approx(expected)


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


def test_mutual_information_hand_2x2():
    # predicted labels S = 0 0 1 1, T = 0 0 0 1: joint counts [[2, 0], [1, 1]] of 4, p_S = (1/2, 1/2),
    # p_T = (3/4, 1/4). I = 1/2 log(4/3) + 1/4 log(2/3) + 1/4 log 2; H_S = log 2, H_T = log 4 - 3/4 log 3.
    s, t = np.eye(2)[[0, 0, 1, 1]] * 3, np.eye(2)[[0, 0, 0, 1]] * 3
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    h_s, h_t = math.log(2), math.log(4) - 0.75 * math.log(3)
    assert M.mutual_information(s, t) == pytest.approx(mi)
    assert M.normalised_mutual_information(s, t) == pytest.approx(2 * mi / (h_s + h_t))
    assert M.mutual_information(s, t) == pytest.approx(mutual_info_score([0, 0, 1, 1], [0, 0, 0, 1]))


def test_mutual_information_against_sklearn():
    rng = np.random.default_rng(5)
    for n_classes, n in ((10, 500), (3, 40), (100, 1000)):
        s, t = rng.normal(size=(n, n_classes)), rng.normal(size=(n, n_classes))
        t[: n // 2] = s[: n // 2] + rng.normal(0, 0.5, size=(n // 2, n_classes))  # dependent half
        a_s, a_t = s.argmax(1), t.argmax(1)
        assert M.mutual_information(s, t) == pytest.approx(mutual_info_score(a_s, a_t), abs=1e-12)
        assert M.normalised_mutual_information(s, t) == pytest.approx(normalized_mutual_info_score(a_s, a_t))
        assert M.mutual_information(s, s) == pytest.approx(-np.sum(np.bincount(a_s) / n * np.log(
            np.where(np.bincount(a_s) > 0, np.bincount(a_s) / n, 1))))  # I(a; a) = H(a)
        assert M.normalised_mutual_information(s, s) == pytest.approx(1.0)


def test_mutual_information_edge_cases_mirror_sklearn():
    one_hot = lambda a: np.eye(3)[a]  # noqa: E731
    cases = [([0, 0, 0], [0, 0, 0]),  # both constant, the same label: 1
             ([1, 1, 1], [2, 2, 2]),  # both constant, different labels: the same partition, 1 as in sklearn
             ([0, 0, 0], [0, 1, 2]),  # one constant: I = 0 -> 0
             ([0, 0, 1, 1], [0, 1, 0, 1])]  # independent: I = 0 -> 0
    for a, b in cases:
        assert M.normalised_mutual_information(one_hot(a), one_hot(b)) == normalized_mutual_info_score(a, b)
        assert M.mutual_information(one_hot(a), one_hot(b)) == pytest.approx(mutual_info_score(a, b), abs=1e-15)
    assert M.normalised_mutual_information(one_hot([1, 1, 1]), one_hot([2, 2, 2])) == 1.0
    assert M.mutual_information(one_hot([0, 0, 1, 1]), one_hot([0, 1, 0, 1])) == 0.0


def _cka_hsic(X, Y):
    """CKA from the HSIC of centred Gram matrices: HSIC(K, L) = tr(K H L H) / (n - 1)^2."""
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T

    def hsic(A, B):
        return np.trace(A @ H @ B @ H) / (n - 1) ** 2

    return hsic(K, L) / math.sqrt(hsic(K, K) * hsic(L, L))


def test_linear_cka_hand():
    # 1-d features: CKA is the squared Pearson correlation. X - mean = (-1, 0, 1), Y - mean = (0, -1, 1):
    # ||Y^T X||^2 = 1, ||X^T X|| = ||Y^T Y|| = 2 -> 1/4
    assert M.linear_cka([[1], [2], [3]], [[1], [0], [2]]) == pytest.approx(0.25)
    assert np.corrcoef([1, 2, 3], [1, 0, 2])[0, 1] ** 2 == pytest.approx(0.25)
    # d1 = 2, d2 = 1, already centred: Y^T X = (2, 0) -> 4; X^T X = 2 I -> sqrt 8; Y^T Y = 2 -> 1/sqrt 2
    X = np.array([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    Y = X[:, :1]
    assert M.linear_cka(X, Y) == pytest.approx(1 / math.sqrt(2))
    # an invertible but not orthogonal map changes it: X diag(10, 1) -> Y^T X A = (20, 0) -> 400;
    # (XA)^T XA = diag(200, 2) -> sqrt(40004); 400 / (2 sqrt(40004)) ~ 0.99995
    assert M.linear_cka(X @ np.diag([10.0, 1.0]), Y) == pytest.approx(200 / math.sqrt(40004))


def test_linear_cka_properties_and_hsic_reference():
    rng = np.random.default_rng(6)
    for n, d1, d2 in ((200, 5, 8), (20, 100, 50), (30, 30, 3)):  # both the feature and the Gram branch
        X = rng.normal(size=(n, d1))
        Y = X[:, : min(d1, d2)] @ rng.normal(size=(min(d1, d2), d2)) + rng.normal(size=(n, d2))
        cka = M.linear_cka(X, Y)
        assert 0 < cka < 1
        assert cka == pytest.approx(_cka_hsic(X, Y), rel=1e-10)
        assert cka == pytest.approx(M.linear_cka(Y, X), rel=1e-12)  # symmetric
        assert M.linear_cka(X, X) == pytest.approx(1.0)
        Q, _ = np.linalg.qr(rng.normal(size=(d1, d1)))
        assert M.linear_cka(3.7 * X @ Q + 5.0, Y) == pytest.approx(cka, rel=1e-10)  # orthogonal, scale, shift
        assert M.linear_cka(X, 1e-3 * Y) == pytest.approx(cka, rel=1e-10)
    X, Y = rng.normal(size=(4000, 4)), rng.normal(size=(4000, 6))
    assert M.linear_cka(X, Y) < 0.01  # independent features
    assert M.linear_cka(X * 1e200, Y) == pytest.approx(M.linear_cka(X, Y))  # no overflow
    assert M.linear_cka(torch.tensor(X[:, :, None]), Y) == pytest.approx(M.linear_cka(X, Y), rel=1e-6)  # flattened
    assert math.isnan(M.linear_cka(np.ones((5, 2)), rng.normal(size=(5, 2))))
    with pytest.raises(ValueError, match="rows"):
        M.linear_cka(X, Y[:10])


def test_functional_metrics_mi_nmi_and_cka():
    rng = np.random.default_rng(7)
    s, t, y = rng.normal(size=(100, 5)), rng.normal(size=(100, 5)), rng.integers(0, 5, 100)
    fs, ft = rng.normal(size=(100, 16)), rng.normal(size=(100, 32))
    base = M.functional_metrics(s, t, y)
    assert base["mi"] == pytest.approx(mutual_info_score(s.argmax(1), t.argmax(1)))
    assert base["nmi"] == pytest.approx(normalized_mutual_info_score(s.argmax(1), t.argmax(1)))
    assert "cka" not in base and "mi" not in M.functional_metrics(s, None, y)
    out = M.functional_metrics(s, t, y, student_features=fs, teacher_features=ft)
    assert out["cka"] == pytest.approx(_cka_hsic(fs - fs.mean(0), ft - ft.mean(0)))
    assert {k: v for k, v in out.items() if k != "cka"} == base
    assert "cka" not in M.functional_metrics(s, t, y, student_features=fs)  # the teacher's are missing
    with pytest.raises(ValueError, match="must hold the same test examples"):
        M.functional_metrics(s, t, y, student_features=fs[:50], teacher_features=ft)
    # a fixed subsample of the test set (the stored CKA rows) is fine
    sub = M.functional_metrics(s, t, y, student_features=fs[:50], teacher_features=ft[:50])
    assert sub["cka"] == pytest.approx(_cka_hsic(fs[:50] - fs[:50].mean(0), ft[:50] - ft[:50].mean(0)))


def test_per_class_hand():
    labels = np.array([0, 0, 1, 1])
    teacher = np.eye(3)[[0, 1, 1, 1]]
    student = np.eye(3)[[0, 0, 2, 1]]
    r = M.per_class(student, teacher, labels, 3)
    np.testing.assert_allclose(r["accuracy"], [1.0, 0.5, np.nan])
    np.testing.assert_allclose(r["agreement"], [0.5, 0.5, np.nan])


def test_unbiased_hsic_hand_and_u_statistic():
    # n = 4, x = (1, -1, 0, 0), y = (0, 0, 1, -1): K~ has -1 at (1,2),(2,1) only, L~ at (3,4),(4,3) only.
    # HSIC_1(K, L) = [tr(K~L~) 0 + (1'K~1 = -2)(1'L~1 = -2) / (3 * 2) - 2/2 (K~1 . L~1 = 0)] / (4 * 1) = 1/6;
    # HSIC_1(K, K) = [2 + 4/6 - 2/2 * 2] / 4 = 1/6: the debiased CKA of these disjoint features is 1 at n = 4
    x, y = np.array([[1.0], [-1], [0], [0]]), np.array([[0.0], [0], [1], [-1]])
    K, L = x @ x.T, y @ y.T
    assert M.hsic_unbiased(K, L) == pytest.approx(1 / 6) and M.hsic_unbiased(K, K) == pytest.approx(1 / 6)
    assert M.debiased_cka(x, y) == pytest.approx(1.0) and M.linear_cka(x, y) == pytest.approx(0.0)
    # the closed form equals the U-statistic over distinct quadruples (Song et al. 2012), written out
    import itertools

    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(7, 3)), rng.normal(size=(7, 2))
    K, L = X @ X.T, Y @ Y.T
    h = [K[i, j] * L[i, j] + K[i, j] * L[q, r] - 2 * K[i, j] * L[i, q] for i, j, q, r in itertools.permutations(range(7), 4)]
    assert M.hsic_unbiased(K, L) == pytest.approx(np.mean(h), rel=1e-10)
    with pytest.raises(ValueError, match="n >= 4"):
        M.hsic_unbiased(K[:3, :3], L[:3, :3])


def test_debiased_cka_removes_the_bias_of_independent_wide_features():
    rng = np.random.default_rng(0)
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    X, Y = relu(rng.normal(size=(512, 256))), relu(rng.normal(size=(512, 512)))
    assert 0.2 < M.linear_cka(X, Y) < 0.6  # independent, yet the biased estimate is far from 0
    assert abs(M.debiased_cka(X, Y)) < 0.02
    assert M.debiased_cka(X, X @ rng.normal(size=(256, 256))) > 0.5  # a linear image of X stays similar
    assert M.debiased_cka(X, X) == pytest.approx(1.0)
    assert np.isnan(M.debiased_cka(np.ones((6, 2)), X[:6]))


def test_plugin_mi_bias_hand_and_by_simulation():
    assert M.mi_plugin_bias(10, 10, 1000) == pytest.approx(81 / 2000)  # (K-1)^2 / 2N
    assert M.mi_plugin_bias(100, 100, 2500) == pytest.approx(99 ** 2 / 5000)
    # independent uniform labels, 10 classes, 500 examples: the plug-in MI averages about 81 / 1000 nats
    rng = np.random.default_rng(1)
    sims = [mutual_info_score(rng.integers(0, 10, 500), rng.integers(0, 10, 500)) for _ in range(400)]
    assert np.mean(sims) == pytest.approx(M.mi_plugin_bias(10, 10, 500), rel=0.1)
    with pytest.raises(ValueError, match="n must be an integer >= 1, got 0"):
        M.mi_plugin_bias(10, 10, 0)
