"""The paper's claims (PROTOCOL.md) and a verdict for each, computed from per-setup summaries.

`verdicts(summaries)` takes the dicts of `analysis.summarise_setup` (one scale, one reading of the KD
weight) and returns one row per claim: claim, statement, verdict, evidence. Nothing is typed by hand.

Rules that keep a verdict from saying more than the data do:
- setups that share their teachers and controls (temperature / KD-weight sweeps, student sizes,
  feature variants of one setup) are one piece of evidence: the first in plan order counts, the others
  are listed beside it as sweeps;
- a claim whose tests cannot reach significance at the seed count is "not testable at this seed count";
- claim 3 is judged on the share of the remaining headroom kd closes on the teacher's errors (A-) against
  its right answers (A+), per seed and paired, and needs the rise of A- itself to be significant;
- claim 4 ("RCD reaches KD") needs equivalence within a stated margin (two one-sided tests), or rcd
  significantly more accurate than kd: "not significantly worse" is not enough.
"""
from __future__ import annotations

import pandas as pd

from .models import CONVOLUTIONAL, family  # registry metadata: a model's family
from .stats import ALPHA, by_adjust, signed_rank_test

SUPPORTED, NOT_SUPPORTED = "supported", "not supported"
NOT_TESTED, NOT_TESTABLE = "not tested at this scale", "not testable at this seed count"
SMALL_TRANSFER_POINTS = 5.0  # "a few points of agreement over the control"
STRONG_BACKDOOR = 0.5  # the teacher's own lift: below it there is no backdoor worth asking about

CLAIMS = {
    1: "KD produces statistically significant functional transfer (kd more teacher-like than control) "
       "in some setups but not in all.",
    2: "Where it is significant, the transfer is small (a few points of agreement over the control).",
    3: "Where it is significant, negative knowledge transfers more than positive: kd closes a larger share "
       "of the remaining headroom on the teacher's errors (A-) than on its right answers (A+).",
    4: "Random control distillation reaches the accuracy of KD in some setups (KD acts as a regulariser).",
    5: "On CIFAR-10, KD with alpha = 0.9 significantly raises agreement for ResNet-18 and VGG-19.",
    6: "ViTs show larger generalisation gaps than CNNs on the same data.",
    7: "A backdoor in the teacher reaches the student more than it reaches the control.",
}


def independent_groups(summaries: list[dict]) -> list[tuple[dict, list[dict]]]:
    """(representative, sweeps): entries that share any teacher or control run are one piece of evidence
    (a sweep of temperature or KD weight, a student size, a feature variant, standard and self
    distillation from one teacher); the first in plan order represents them. Reruns of the very same kd
    runs (the same reading listed twice) are dropped."""
    parent = list(range(len(summaries)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict = {}
    for i, s in enumerate(summaries):
        for h in list(s.get("teacher_hashes", ())) + list(s.get("control_hashes", ())):
            if h in owner:
                parent[root(i)] = root(owner[h])
            else:
                owner[h] = i
    groups: dict = {}  # root -> (representative: the first in plan order, sweeps)
    for i, s in enumerate(summaries):
        rep, sweeps = groups.setdefault(root(i), (s, []))
        if s is not rep and tuple(s.get("kd_hashes", ())) != tuple(rep.get("kd_hashes", ())):
            sweeps.append(s)
    return list(groups.values())


def independence_table(columns: dict[str, list[dict]]) -> pd.DataFrame:
    """Per column of the claims page: the independent setups (own teachers and controls) that the clean
    claims count, the entries that share a teacher or control with one of them, and the backdoor entries."""
    rows = []
    for col, summaries in columns.items():
        clean = independent_groups([x for x in summaries if not x.get("has_backdoor")])
        rows.append({"column": col, "independent setups": len(clean),
                     "counted (each with its own teachers and controls)": ", ".join(rep["id"] for rep, _ in clean),
                     "sharing a teacher or control with one of them": ", ".join(
                         f"{w['id']} (with {rep['id']})" for rep, sweeps in clean for w in sweeps) or "-",
                     "backdoor entries (claim 7)": ", ".join(x["id"] for x in summaries if x.get("has_backdoor")) or "-"})
    return pd.DataFrame(rows)


def _sweeps_note(groups, pick=lambda s: True, fmt=lambda s: s["id"]) -> str:
    items = [f"{fmt(w)} (sweep of {rep['id']})" for rep, sweeps in groups for w in sweeps if pick(w)]
    return f" Sweeps sharing those teachers and controls, not counted again: {'; '.join(items)}." if items else ""


def _claim1(groups):
    reps = [r for r, _ in groups]
    testable = [r for r in reps if r["primary_testable"]]
    if len(reps) < 2:
        return NOT_TESTED, f"needs at least two independent setups; {len(reps)} ran"
    if len(testable) < 2:
        return NOT_TESTABLE, (f"{len(reps)} independent setups, {len(testable)} with enough seeds for the primary "
                              f"tests to reach significance after correction (seeds: {sorted({r['n_seeds'] for r in reps})})")
    sig = [r["id"] for r in testable if r["significant_transfer"]]
    ok = 0 < len(sig) < len(testable)
    return (SUPPORTED if ok else NOT_SUPPORTED,
            f"significant kd > control agreement (primary family, BY-corrected) in {len(sig)} of {len(testable)} "
            f"independent setups" + (f": {', '.join(sig)}" if sig else "") + "."
            + _sweeps_note(groups, lambda s: True, lambda s: f"{s['id']} {'significant' if s['significant_transfer'] else 'not significant'}"))


def _significant(groups):
    return [r for r, _ in groups if r["primary_testable"] and r["significant_transfer"]]


def _why_none_significant(groups) -> tuple[str, str]:
    """The verdict of claims 2 and 3, which ask about the significant setups, when there are none."""
    if not groups:
        return NOT_TESTED, "no setups ran"
    if not any(r["primary_testable"] for r, _ in groups):
        return NOT_TESTABLE, "no setup has enough seeds for its primary tests"
    return NOT_TESTED, "no independent setup shows significant transfer"


def _claim2(groups):
    sig = _significant(groups)
    if not sig:
        return _why_none_significant(groups)
    gains = ", ".join(f"{x['id']} {x['agreement_gain_points']:+.2f}" for x in sig)
    ok = all(x["agreement_gain_points"] < SMALL_TRANSFER_POINTS for x in sig)
    return SUPPORTED if ok else NOT_SUPPORTED, f"agreement gain of kd over control, points: {gains} (threshold {SMALL_TRANSFER_POINTS:g})."


def _claim3(groups):
    sig = _significant(groups)
    if not sig:
        return _why_none_significant(groups)
    p_by = by_adjust([x["asymmetry_p"] for x in sig])
    parts, ok = [], 0
    for x, pb in zip(sig, p_by):
        if x["asymmetry_n"] < 5:
            parts.append(f"{x['id']}: only {x['asymmetry_n']} seeds with a defined headroom share")
            continue
        holds = x["neg_rise_significant"] and pb <= ALPHA and x["neg_share_closed"] > x["pos_share_closed"]
        ok += holds
        excl = f", {x['asymmetry_excluded']} seed(s) excluded (no teacher errors or no headroom)" if x["asymmetry_excluded"] else ""
        parts.append(f"{x['id']}: share of headroom closed A- {x['neg_share_closed']:.2f} vs A+ {x['pos_share_closed']:.2f} "
                     f"(A- > A+ p (BY over these setups) {pb:.2g}; rise of A- itself p (BY) {x['neg_rise_p_by']:.2g}{excl})")
    if all("only" in p for p in parts):
        return NOT_TESTABLE, "; ".join(parts)
    return (SUPPORTED if ok == len(sig) else NOT_SUPPORTED,
            f"{ok} of {len(sig)} significant setups show the asymmetry; " + "; ".join(parts) + ".")


def _claim4(groups):
    reps = [r for r, _ in groups]
    if not reps:
        return NOT_TESTED, "no setups ran"
    testable = [r for r in reps if r["equivalence_testable"]]
    if not testable:
        return NOT_TESTABLE, f"the equivalence test cannot reach p <= {ALPHA} with {sorted({r['n_seeds'] for r in reps})} seeds"
    parts, reached = [], []
    for r in testable:
        better = r["rcd_better_p"] <= ALPHA
        if r["rcd_kd_equivalent"] or better:
            reached.append(r["id"])
        parts.append(f"{r['id']}: rcd - kd accuracy {100 * r['rcd_kd_accuracy_diff']:+.2f} points, "
                     f"{'equivalent' if r['rcd_kd_equivalent'] else 'not shown equivalent'} within "
                     f"±{100 * r['equivalence_margin']:g} (TOST p {r['rcd_kd_equivalence_p']:.2g})"
                     + ("; rcd significantly more accurate" if better else ""))
    return (SUPPORTED if reached else NOT_SUPPORTED,
            f"rcd reaches kd in {len(reached)} of {len(testable)} independent setups: " + "; ".join(parts) + ".")


PAPER_MODELS = {"ResNet": ("resnet18", {}), "VGG": ("vgg19", {})}  # claim 5 names ResNet-18 and VGG-19


def _claim5(groups):
    """On CIFAR-10 self-distillation of each family: the paper's own ResNet-18 / VGG-19 where they ran,
    else the family's smaller members (said so in the evidence)."""
    by_family = {}
    for rep, sweeps in groups:
        for x in [rep] + sweeps:
            if x["dataset"] == "cifar10" and x["kind"] == "self" and x["variant"] == "logit":
                by_family.setdefault(family(x["student_model"]), []).append(x)
    if not set(PAPER_MODELS) <= set(by_family):
        return NOT_TESTED, "needs CIFAR-10 self-distillation with a ResNet and a VGG (the paper's ResNet-18 and VGG-19)"
    xs, smaller = {}, []
    for fam, (model, args) in PAPER_MODELS.items():
        own = [x for x in by_family[fam] if x["student_model"] == model and x.get("student_args", {}) == args]
        xs[fam] = (own or by_family[fam])[0]
        if not own:
            smaller.append(fam)
    if not all(x["primary_testable"] for x in xs.values()):
        return NOT_TESTABLE, "too few seeds for the primary tests"
    ok = all(x["significant_transfer"] for x in xs.values())
    note = (f" Judged on smaller members of the {' and '.join(smaller)} famil{'ies' if len(smaller) > 1 else 'y'} "
            "(narrower / shallower than the paper's ResNet-18 / VGG-19), trained on the CPU." if smaller else "")
    return SUPPORTED if ok else NOT_SUPPORTED, "; ".join(
        f"{x['id']} ({x['student_model']} {x.get('student_args') or ''}): agreement gain "
        f"{x['agreement_gain_points']:+.2f} points, p (BY) {x['agreement_p_by']:.2g}" for x in xs.values()) + "." + note


def _claim6(groups):
    """Teachers' generalisation gaps, ViT against each CNN on the same data, with the same number of
    epochs and the same optimiser, paired by seed."""
    teachers = [r for r, _ in groups]
    out, untestable = [], []
    for v in [t for t in teachers if family(t["teacher_model"]) == "ViT"]:
        for c in [t for t in teachers if family(t["teacher_model"]) in CONVOLUTIONAL and t["dataset"] == v["dataset"]
                  and t["epochs"] == v["epochs"] and t.get("optimizer") == v.get("optimizer")]:
            seeds = sorted(set(v["teacher_gaps"]) & set(c["teacher_gaps"]))
            res = signed_rank_test([v["teacher_gaps"][s] for s in seeds], [c["teacher_gaps"][s] for s in seeds], "greater")
            (out if res["min_p"] <= ALPHA else untestable).append((v, c, res, seeds))
    if not out and not untestable:
        return NOT_TESTED, ("needs a ViT and a CNN teacher on the same dataset with the same number of epochs and "
                            "the same optimiser")
    if not out:
        return NOT_TESTABLE, "too few seeds to test the gap difference"
    ok = all(res["p"] <= ALPHA for _, _, res, _ in out)
    return SUPPORTED if ok else NOT_SUPPORTED, "; ".join(
        f"{v['dataset']}: ViT gap {v['teacher_gap']:.1f} vs {c['teacher_model']} {c['teacher_gap']:.1f} points "
        f"({len(seeds)} seeds, {v['epochs']} epochs of {v.get('optimizer')} each; one-sided p {res['p']:.2g})"
        for v, c, res, seeds in out)


def _claim7(groups):
    """Judged on the trigger's lift (attack success minus the base rate of predicting the target on the
    same clean inputs): a student merely biased towards the target class raises attack success too."""
    bd = [r for r, _ in groups if r.get("has_backdoor")]
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
    if not any(x["primary_testable"] for x in strong):
        return NOT_TESTABLE, "; ".join(line(x) for x in strong)
    ok = [x for x in strong if x["backdoor_lift_transfers"]]
    return SUPPORTED if ok else NOT_SUPPORTED, "; ".join(line(x) for x in strong)


RULES = {1: _claim1, 2: _claim2, 3: _claim3, 4: _claim4, 5: _claim5, 6: _claim6, 7: _claim7}


def verdicts(summaries: list[dict]) -> pd.DataFrame:
    """Claims 1-6 are judged on the setups with a clean teacher; claim 7 on the backdoor setups."""
    clean = independent_groups([x for x in summaries if not x.get("has_backdoor")])
    allg = independent_groups(summaries)
    rows = []
    for k, text in CLAIMS.items():
        verdict, evidence = RULES[k](allg if k == 7 else clean)
        rows.append({"claim": k, "statement": text, "verdict": verdict, "evidence": evidence})
    return pd.DataFrame(rows)


def verdict_matrix(columns: dict[str, list[dict]]) -> tuple[pd.DataFrame, dict]:
    """Verdicts side by side, one column per body of evidence (e.g. scale x reading of the KD weight),
    a `flips` column naming where a claim's verdict differs between readings of the same scale; and the
    evidence texts, keyed by (column, claim)."""
    table, evidence = {}, {}
    for col, summaries in columns.items():
        v = verdicts(summaries)
        table[col] = dict(zip(v["claim"], v["verdict"]))
        for k, e in zip(v["claim"], v["evidence"]):
            evidence[(col, k)] = e
    out = pd.DataFrame(table)
    out.index.name = "claim"
    scales = {}
    for col in columns:
        scales.setdefault(col.split(",")[0], []).append(col)
    flips = []  # a verdict that changes between supported and not supported, not one that is merely untested
    for k in out.index:
        f = [s for s, cols in scales.items()
             if len({out.loc[k, c] for c in cols if out.loc[k, c] in (SUPPORTED, NOT_SUPPORTED)}) > 1]
        flips.append(", ".join(f) if f else "")
    out["flips between readings"] = flips
    out.insert(0, "statement", [CLAIMS[k] for k in out.index])
    return out, evidence



# What the paper's abstract says, as the claims that test it (PROTOCOL.md): small transfer, a negative
# asymmetric payoff, KD as a data-dependent regulariser, and the safety consequence.
ABSTRACT = (("KD transfers little of the teacher's function: significant in some setups, and small where it is", (1, 2)),
            ("the payoff is negatively asymmetric: the teacher's errors transfer more than its right answers", (3,)),
            ("KD acts as a data-dependent regulariser: random control distillation reaches its accuracy", (4,)),
            ("a teacher's backdoor reaches its students", (7,)))


def closest_to_paper(matrix: pd.DataFrame, scale: str) -> str:
    """A paragraph comparing one scale's verdicts (every reading of alpha) with the paper's abstract,
    written from the verdict matrix: nothing in it is typed by hand but the abstract's statements."""
    cols = [c for c in matrix.columns if c.split(",")[0] == scale]
    if not cols:
        return ""

    def agreement(claims) -> str:
        parts = []
        for c in cols:
            vs = [matrix.loc[k, c] for k in claims]
            if all(v == SUPPORTED for v in vs):
                word = "agrees"
            elif NOT_SUPPORTED in vs:
                word = "disagrees (" + ", ".join(f"claim {k} {v}" for k, v in zip(claims, vs) if v == NOT_SUPPORTED) + ")"
            else:
                word = "cannot say (" + ", ".join(f"claim {k} {v}" for k, v in zip(claims, vs) if v != SUPPORTED) + ")"
            parts.append(f"{c.split(',', 1)[1].strip()}: {word}")
        return "; ".join(parts)

    lines = [f"- *{text}* (claim{'s' if len(ks) > 1 else ''} {', '.join(map(str, ks))}): {agreement(ks)}."
             for text, ks in ABSTRACT]
    return "\n".join(lines)
