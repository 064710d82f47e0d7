"""The paper's claims (PROTOCOL.md) and a verdict for each, computed from per-setup summaries.

`verdicts(summaries)` takes the dicts of `analysis.summarise_setup` and returns one row per claim:
claim, verdict (supported / not supported / not tested at this scale), evidence. Nothing is typed by hand.
"""
from __future__ import annotations

import math

import pandas as pd

SUPPORTED, NOT_SUPPORTED, NOT_TESTED = "supported", "not supported", "not tested at this scale"
SMALL_TRANSFER_POINTS = 5.0  # "a few points of agreement over the control"
STRONG_BACKDOOR = 0.5  # the teacher's own lift: below it there is no backdoor worth asking about
CNN_MODELS = {"resnet18", "resnet", "vgg19", "vgg11", "lenet"}

CLAIMS = {
    1: "KD produces statistically significant functional transfer (kd more teacher-like than control) "
       "in some setups but not in all.",
    2: "Where it is significant, the transfer is small (a few points of agreement over the control).",
    3: "Where it is significant, negative knowledge transfers more than positive: the relative rise of "
       "A- over the control exceeds that of A+.",
    4: "Random control distillation reaches the accuracy of KD in some setups (KD acts as a regulariser).",
    5: "On CIFAR-10, KD with alpha = 0.9 significantly raises agreement for ResNet-18 and VGG-19.",
    6: "ViTs show larger generalisation gaps than CNNs on the same data.",
    7: "A backdoor in the teacher reaches the student more than it reaches the control.",
}


def _claim1(s):
    if len(s) < 2:
        return NOT_TESTED, f"needs at least two setups; {len(s)} ran"
    sig = [x["id"] for x in s if x["significant_transfer"]]
    ok = 0 < len(sig) < len(s)
    return (SUPPORTED if ok else NOT_SUPPORTED,
            f"significant kd > control agreement (BY-corrected) in {len(sig)} of {len(s)} setups"
            + (f": {', '.join(sig)}" if sig else ""))


def _claim2(s):
    sig = [x for x in s if x["significant_transfer"]]
    if not sig:
        return NOT_TESTED, "no setup shows significant transfer"
    gains = ", ".join(f"{x['id']} +{x['agreement_gain_points']:.2f}" for x in sig)
    ok = all(x["agreement_gain_points"] < SMALL_TRANSFER_POINTS for x in sig)
    return SUPPORTED if ok else NOT_SUPPORTED, f"agreement gain over control in points ({gains}); threshold {SMALL_TRANSFER_POINTS:g}"


def _claim3(s):
    sig = [x for x in s if x["significant_transfer"]]
    if not sig:
        return NOT_TESTED, "no setup shows significant transfer"
    parts, ok = [], 0
    for x in sig:
        neg, pos = x["neg_gain_relative"], x["pos_gain_relative"]
        holds = not math.isnan(neg) and not math.isnan(pos) and neg > pos
        ok += holds
        parts.append(f"{x['id']}: ΔA- {100 * neg:+.1f} % vs ΔA+ {100 * pos:+.1f} % (relative)")
    return SUPPORTED if ok == len(sig) else NOT_SUPPORTED, f"{ok} of {len(sig)} significant setups; " + "; ".join(parts)


def _claim4(s):
    if not s:
        return NOT_TESTED, "no setups ran"
    matched = [x["id"] for x in s if not x["kd_beats_rcd_accuracy"]]
    return (SUPPORTED if matched else NOT_SUPPORTED,
            f"kd is not significantly more accurate than rcd in {len(matched)} of {len(s)} setups"
            + (f": {', '.join(matched)}" if matched else ""))


def _claim5(s):
    by_model = {}
    for x in s:
        if x["dataset"] == "cifar10" and x["kind"] == "self" and x["alpha"] == 0.9 and x["variant"] == "logit":
            by_model.setdefault(x["student_model"], []).append(x)
    if not ({"resnet18", "vgg19"} <= set(by_model)):
        return NOT_TESTED, "needs CIFAR-10 ResNet-18 and VGG-19 self-distillation at alpha 0.9 (paper scale)"
    ok = all(any(x["significant_transfer"] for x in by_model[m]) for m in ("resnet18", "vgg19"))
    return SUPPORTED if ok else NOT_SUPPORTED, "; ".join(
        f"{m}: p (BY) {by_model[m][0]['agreement_p_by']:.3g}" for m in ("resnet18", "vgg19"))


def _claim6(s):
    out = []
    for ds in sorted({x["dataset"] for x in s}):
        vit = [x["teacher_gap"] for x in s if x["dataset"] == ds and x["teacher_model"] == "vit"]
        cnn = [x["teacher_gap"] for x in s if x["dataset"] == ds and x["teacher_model"] in CNN_MODELS]
        if vit and cnn:
            out.append((ds, max(vit), max(cnn)))
    if not out:
        return NOT_TESTED, "needs a ViT and a CNN setup on the same dataset (paper scale)"
    ok = all(v > c for _, v, c in out)
    return SUPPORTED if ok else NOT_SUPPORTED, "; ".join(
        f"{ds}: ViT gap {v:.1f} vs largest CNN gap {c:.1f} points" for ds, v, c in out)


def _claim7(s):
    """Judged on the trigger's lift (attack success minus the base rate of predicting the target on the
    same clean inputs): a student merely biased towards the target class raises attack success too."""
    bd = [x for x in s if x.get("has_backdoor")]
    if not bd:
        return NOT_TESTED, "no backdoor setup ran at this scale"

    def line(x):
        return (f"{x['id']}: attack success teacher {100 * x['teacher_backdoor_asr']:.1f} %, control "
                f"{100 * x['control_backdoor_asr']:.1f} %, kd {100 * x['kd_backdoor_asr']:.1f} %, rcd "
                f"{100 * x['rcd_backdoor_asr']:.1f} % (kd > control p (BY) {x['backdoor_kd_vs_control_p_by']:.2g}); "
                f"lift of the trigger over the base rate: teacher {100 * x['teacher_backdoor_lift']:.1f}, control "
                f"{100 * x['control_backdoor_lift']:.1f}, kd {100 * x['kd_backdoor_lift']:.1f} points "
                f"(kd > control p (BY) {x['backdoor_lift_kd_vs_control_p_by']:.2g})")

    strong = [x for x in bd if x["teacher_backdoor_lift"] >= STRONG_BACKDOOR]
    if not strong:
        return NOT_TESTED, (f"no teacher learned its backdoor (lift >= {100 * STRONG_BACKDOOR:.0f} points); "
                            + "; ".join(line(x) for x in bd))
    ok = [x for x in strong if x["backdoor_lift_transfers"]]
    return SUPPORTED if ok else NOT_SUPPORTED, "; ".join(line(x) for x in strong)


RULES = {1: _claim1, 2: _claim2, 3: _claim3, 4: _claim4, 5: _claim5, 6: _claim6, 7: _claim7}


def verdicts(summaries: list[dict]) -> pd.DataFrame:
    """Claims 1-6 are judged on the setups with a clean teacher; claim 7 on the backdoor setups."""
    clean = [x for x in summaries if not x.get("has_backdoor")]
    rows = []
    for k, text in CLAIMS.items():
        verdict, evidence = RULES[k](summaries if k == 7 else clean)
        rows.append({"claim": k, "statement": text, "verdict": verdict, "evidence": evidence})
    return pd.DataFrame(rows)
