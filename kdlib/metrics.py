"""Metrics as pure functions of logits, labels and features (PROTOCOL.md, "Metrics").

Inputs may be torch tensors or numpy arrays of any float dtype; everything is computed in float64
numpy. Fractions are in [0, 1]; logarithms are natural. p_A is a softmax output, a_A its argmax.
Beyond the protocol's list: the mutual information between the two models' predicted labels (plain
and normalised; `mi_plugin_bias` states its upward bias) and linear CKA between their representations
(biased, as stored; `debiased_cka` is computed at read time from the stored features).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

N_BINS = 15


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().float().numpy()
    return np.asarray(a)


def log_softmax(logits) -> np.ndarray:
    z = _np(logits).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits) -> np.ndarray:
    return np.exp(log_softmax(logits))


def accuracy(logits, labels) -> float:
    return float(np.mean(_np(logits).argmax(1) == _np(labels)))


def mutual_disagreement(logits_list) -> float:
    """Mean over every pair of models of the fraction of examples on which their predicted labels differ:
    how much independently trained models (e.g. the controls of different seeds) disagree among themselves.
    NaN for fewer than two models."""
    preds = [_np(z).argmax(1) for z in logits_list]
    pairs = [(preds[i] != preds[j]).mean() for i in range(len(preds)) for j in range(i + 1, len(preds))]
    return float(np.mean(pairs)) if pairs else float("nan")


def share_closed(kd_agreement: float, control_agreement: float) -> float:
    """(kd - control) / (1 - control), of mean agreements with the teacher: the net fraction of the examples on
    which the control disagrees with its teacher where kd agrees instead. NaN where the control agrees everywhere."""
    room = 1.0 - control_agreement
    return (kd_agreement - control_agreement) / room if room > 0 else float("nan")


def cross_entropy(logits, labels) -> float:
    """Mean negative log-likelihood of the true class (one entry per example, not a B x B matrix)."""
    lp, y = log_softmax(logits), _np(labels).astype(int)
    return float(-lp[np.arange(len(y)), y].mean())


def expected_calibration_error(logits, labels, n_bins: int = N_BINS) -> float:
    """ECE with equal-width confidence bins (i/n, (i+1)/n]: sum_b |B|/N |acc(B) - conf(B)|."""
    p, y = softmax(logits), _np(labels)
    conf, pred = p.max(1), p.argmax(1)
    correct = (pred == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        m = bins == b
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


def agreement(student_logits, teacher_logits) -> float:
    return float(np.mean(_np(student_logits).argmax(1) == _np(teacher_logits).argmax(1)))


def _kl_rows(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """KL(p || q) per row, with 0 log 0 = 0."""
    p = np.exp(log_p)
    return np.where(p > 0, p * (log_p - log_q), 0.0).sum(1)


def js_divergence(student_logits, teacher_logits) -> float:
    """Mean over examples of 1/2 [KL(p_S || m) + KL(p_T || m)], m = (p_S + p_T) / 2."""
    ls, lt = log_softmax(student_logits), log_softmax(teacher_logits)
    lm = np.log(0.5 * (np.exp(ls) + np.exp(lt)))
    return float(np.mean(0.5 * (_kl_rows(ls, lm) + _kl_rows(lt, lm))))


def activation_distance(student_logits, teacher_logits) -> float:
    """Mean L2 distance between the two probability vectors."""
    return float(np.mean(np.linalg.norm(softmax(student_logits) - softmax(teacher_logits), axis=1)))


def kl_teacher_student(student_logits, teacher_logits) -> float:
    """Mean KL(p_T || p_S)."""
    return float(np.mean(_kl_rows(log_softmax(teacher_logits), log_softmax(student_logits))))


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def _joint_counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Contingency table of two label vectors over the label values that occur."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"need two non-empty label vectors of one length, got {len(a)} and {len(b)}")
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(table, (ia, ib), 1.0)
    return table


def _mi_from_counts(table: np.ndarray) -> float:
    if min(table.shape) == 1:  # a constant labelling carries no information
        return 0.0
    pij = table / table.sum()
    pi, pj = pij.sum(1, keepdims=True), pij.sum(0, keepdims=True)
    nz = pij > 0
    mi = float((pij[nz] * np.log(pij[nz] / (pi @ pj)[nz])).sum())
    return max(0.0, mi)  # rounding can leave -1e-17 where the labels are independent


def mutual_information(student_logits, teacher_logits) -> float:
    """Plug-in I(a_S; a_T) in nats: sum_ij p_ij log(p_ij / (p_i p_j)) over the joint table of the two
    models' predicted labels on the test set (sklearn's mutual_info_score)."""
    return _mi_from_counts(_joint_counts(_np(student_logits).argmax(1), _np(teacher_logits).argmax(1)))


def normalised_mutual_information(student_logits, teacher_logits) -> float:
    """2 I(a_S; a_T) / (H(a_S) + H(a_T)) in [0, 1] (sklearn's normalized_mutual_info_score, arithmetic).
    As in sklearn: 1 when both models predict a single label each (the same partition of the test set,
    whichever labels), 0 when I = 0 otherwise."""
    table = _joint_counts(_np(student_logits).argmax(1), _np(teacher_logits).argmax(1))
    if table.shape == (1, 1):
        return 1.0
    mi = _mi_from_counts(table)
    if mi == 0.0:
        return 0.0
    h = 0.5 * (_entropy(table.sum(1)) + _entropy(table.sum(0)))
    return float(min(1.0, mi / h))


def _features(a) -> np.ndarray:
    a = _np(a).astype(np.float64)
    return a.reshape(len(a), -1)


def linear_cka(X, Y) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019) of two representations of the same n
    examples (n x d1 and n x d2; more dimensions are flattened per example):
    ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) on column-centred X, Y. NaN if either is constant.
    Each matrix is scaled to unit Frobenius norm first (CKA ignores isotropic scaling) so the products
    cannot overflow; with more features than examples the n x n Gram form, tr(K L) / (||K|| ||L||),
    is the same number at lower cost."""
    X, Y = _features(X), _features(Y)
    if len(X) != len(Y):
        raise ValueError(f"CKA needs the same examples in both representations, got {len(X)} and {len(Y)} rows")
    X, Y = X - X.mean(0), Y - Y.mean(0)
    for A in (X, Y):
        top = np.abs(A).max() if A.size else 0.0
        if not top > 0:
            return float("nan")
        A /= top  # before the norm, whose sum of squares could overflow
        A /= np.sqrt((A * A).sum())
    n, d1, d2 = len(X), X.shape[1], Y.shape[1]
    # einsum rather than BLAS: a BLAS product sums in an order that depends on how the library was
    # started (its thread count), and a stored metric must not depend on the process that computed it
    # (a Ray worker, a pool worker, the driver); einsum's loops are the same everywhere
    if n * (d1 + d2) < d1 * d2 + d1 * d1 + d2 * d2:
        K, L = (np.einsum("ik,jk->ij", A, A, optimize=False) for A in (X, Y))
        num, den = float((K * L).sum()), float(np.sqrt((K * K).sum() * (L * L).sum()))
    else:
        cross = np.einsum("ni,nj->ij", Y, X, optimize=False)
        XX, YY = (np.einsum("ni,nj->ij", A, A, optimize=False) for A in (X, Y))
        num, den = float((cross * cross).sum()), float(np.sqrt((XX * XX).sum() * (YY * YY).sum()))
    return float(np.clip(num / den, 0.0, 1.0))


def hsic_unbiased(K, L) -> float:
    """The unbiased HSIC estimator of two n x n Gram matrices (Song et al. 2012), n >= 4: with K~, L~ the
    matrices with zeroed diagonals,
    [tr(K~ L~) + (1'K~1)(1'L~1) / ((n-1)(n-2)) - 2 / (n-2) 1'K~L~1] / (n(n-3)).
    It equals the U-statistic over distinct index quadruples, so it can be negative."""
    K, L = np.array(K, dtype=np.float64), np.array(L, dtype=np.float64)
    n = len(K)
    if K.shape != (n, n) or L.shape != (n, n) or n < 4:
        raise ValueError(f"need two n x n Gram matrices with n >= 4, got {K.shape} and {L.shape}")
    np.fill_diagonal(K, 0.0)
    np.fill_diagonal(L, 0.0)
    return float(((K * L).sum() + K.sum() * L.sum() / ((n - 1) * (n - 2)) - 2.0 * (K.sum(0) @ L.sum(1)) / (n - 2))
                 / (n * (n - 3)))


def debiased_cka(X, Y) -> float:
    """Linear CKA from the unbiased HSIC estimator (Song et al. 2012; Nguyen, Raghu & Kornblith 2021) of
    column-centred X, Y (n x d1, n x d2): HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L)), K = X X'.
    The biased `linear_cka` of a few hundred rows is far above 0 for independent wide representations
    (0.2 - 0.5 for 512 rows of independent ReLU features of 128 - 512 dimensions); this one is near 0
    there and may be slightly negative. NaN where a self-similarity is not positive. Computed when the
    book is read, from the stored float16 features (runs store only the biased CKA)."""
    X, Y = _features(X), _features(Y)
    if len(X) != len(Y):
        raise ValueError(f"CKA needs the same examples in both representations, got {len(X)} and {len(Y)} rows")
    X, Y = X - X.mean(0), Y - Y.mean(0)
    K, L = X @ X.T, Y @ Y.T
    kk, ll = hsic_unbiased(K, K), hsic_unbiased(L, L)
    if not (kk > 0 and ll > 0):
        return float("nan")
    return float(hsic_unbiased(K, L) / np.sqrt(kk * ll))


def mi_plugin_bias(n_labels_a: int, n_labels_b: int, n: int) -> float:
    """First-order bias of the plug-in mutual information of two independent labellings of n examples
    (Miller 1955; Panzeri & Treves 1996): about (K_a - 1)(K_b - 1) / (2 n) nats, so with K classes on both
    sides (K - 1)^2 / 2n: 0.04 nats for 10 classes on 1,000 examples, 2.0 for 100 on 2,500. The plug-in MI
    of two unrelated models sits this far above 0."""
    for name, v, low in (("n_labels_a", n_labels_a, 1), ("n_labels_b", n_labels_b, 1), ("n", n, 1)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    return (n_labels_a - 1) * (n_labels_b - 1) / (2.0 * n)


def transfer_split(student_logits, teacher_logits, labels) -> dict:
    """Agreement where the teacher is right (A+) and where it is wrong (A-), with the set sizes.

    A- counts the student repeating the teacher's *wrong label*, not merely also being wrong."""
    a_s, a_t, y = _np(student_logits).argmax(1), _np(teacher_logits).argmax(1), _np(labels)
    right, same = a_t == y, a_s == a_t
    n_pos, n_neg = int(right.sum()), int((~right).sum())
    return {
        "pos_agreement": float(same[right].mean()) if n_pos else float("nan"),
        "neg_agreement": float(same[~right].mean()) if n_neg else float("nan"),
        "n_teacher_correct": n_pos,
        "n_teacher_wrong": n_neg,
        "n_pos_agree": int(same[right].sum()),
        "n_neg_agree": int(same[~right].sum()),
    }


def model_metrics(logits, labels) -> dict:
    """The metrics of one model on its own: accuracy, loss (mean CE), ECE."""
    return {"accuracy": accuracy(logits, labels), "loss": cross_entropy(logits, labels),
            "ece": expected_calibration_error(logits, labels)}


def functional_metrics(student_logits, teacher_logits: Optional[object], labels,
                       student_features=None, teacher_features=None) -> dict:
    """All test-set metrics of a student measured against its teacher (PROTOCOL.md).

    Keys: accuracy, loss, ece, agreement, disagreement, js_divergence, activation_distance,
    kl_teacher_student, pos_agreement (A+), neg_agreement (A-), n_teacher_correct, n_teacher_wrong,
    n_pos_agree, n_neg_agree, mi, nmi; cka too when both feature arrays are given (the same test
    examples in the same order, e.g. a fixed subsample). With teacher_logits None only the model's own
    metrics are returned."""
    s, y = _np(student_logits), _np(labels)
    if len(s) != len(y):
        raise ValueError(f"{len(s)} logit rows but {len(y)} labels")
    out = model_metrics(s, y)
    if teacher_logits is None:
        return out
    t = _np(teacher_logits)
    if t.shape != s.shape:
        raise ValueError(f"student logits {s.shape} and teacher logits {t.shape} differ in shape")
    agree = agreement(s, t)
    out.update({
        "agreement": agree, "disagreement": 1.0 - agree, "js_divergence": js_divergence(s, t),
        "activation_distance": activation_distance(s, t), "kl_teacher_student": kl_teacher_student(s, t),
        **transfer_split(s, t, y),
        "mi": mutual_information(s, t), "nmi": normalised_mutual_information(s, t),
    })
    if student_features is not None and teacher_features is not None:
        fs, ft = _np(student_features), _np(teacher_features)
        if len(fs) != len(ft) or len(fs) > len(s):
            raise ValueError(f"student features {fs.shape} and teacher features {ft.shape} must hold the same test "
                             f"examples (at most the {len(s)} of the test set)")
        out["cka"] = linear_cka(fs, ft)
    return out


def per_class(student_logits, teacher_logits, labels, n_classes: int) -> dict:
    """Accuracy and agreement with the teacher for each true class (NaN for an empty class)."""
    a_s, a_t, y = _np(student_logits).argmax(1), _np(teacher_logits).argmax(1), _np(labels)
    acc, agr = np.full(n_classes, np.nan), np.full(n_classes, np.nan)
    for c in range(n_classes):
        m = y == c
        if m.any():
            acc[c], agr[c] = (a_s[m] == c).mean(), (a_s[m] == a_t[m]).mean()
    return {"accuracy": acc, "agreement": agr}


def attack_success_rate(triggered_logits, target: int) -> float:
    """Fraction of triggered inputs (all of a class other than the target) classified as the target."""
    return float(np.mean(_np(triggered_logits).argmax(1) == target))


def backdoor_metrics(triggered_logits, test_logits, labels, target: int) -> dict:
    """Attack success on the triggered non-target test inputs, the rate at which the same inputs
    *without* the trigger are classified as the target (a model biased towards the target class scores
    here too), and the lift of the trigger over that base rate."""
    y = _np(labels)
    asr = attack_success_rate(triggered_logits, target)
    clean = float(np.mean(_np(test_logits)[y != target].argmax(1) == target))
    return {"backdoor_asr": asr, "backdoor_clean_rate": clean, "backdoor_lift": asr - clean}
