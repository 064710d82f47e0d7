"""Metrics as pure functions of logits and labels (PROTOCOL.md, "Metrics").

Inputs may be torch tensors or numpy arrays of any float dtype; everything is computed in float64
numpy. Fractions are in [0, 1]; logarithms are natural. p_A is a softmax output, a_A its argmax.
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


def functional_metrics(student_logits, teacher_logits: Optional[object], labels) -> dict:
    """All test-set metrics of a student measured against its teacher (PROTOCOL.md).

    Keys: accuracy, loss, ece, agreement, disagreement, js_divergence, activation_distance,
    kl_teacher_student, pos_agreement (A+), neg_agreement (A-), n_teacher_correct, n_teacher_wrong,
    n_pos_agree, n_neg_agree. With teacher_logits None only the model's own metrics are returned."""
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
    })
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
