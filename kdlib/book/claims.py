"""The paper's claims (PROTOCOL.md) and a verdict for each, computed from per-setup summaries.

`verdicts(summaries)` takes the dicts of `analysis.summarise_setup` (one scale, one reading of the KD
weight) and returns one row per claim: claim, statement, verdict, evidence. Nothing is typed by hand.

Rules that keep a verdict from saying more than the data do:
- setups that share their teachers and controls (temperature / KD-weight sweeps, student sizes,
  feature variants of one setup) are one piece of evidence: the first in plan order counts, the others
  are listed beside it as sweeps;
- a claim whose deciding test cannot pass its correction with the pairs the signed-rank test keeps (the
  non-zero differences; `stats.reachable`) is "not testable at this seed count" there, never evidence;
- a setup whose headroom is below a claim's threshold counts neither way, named per setup: for claim 1 a
  control that disagrees with its teacher on fewer than `min_disagreements` test examples per seed, for
  claim 2 a control within 5 points of 100 % agreement;
- claim 2 needs the gain shown below 5 points (a one-sided test, its upper confidence bound), not a
  point estimate below it;
- claim 3 is judged on the share of the remaining headroom kd closes on the teacher's errors (A-) against
  its right answers (A+), per seed and paired, and needs the rise of A- itself to be significant; only the
  setups whose asymmetry test is reachable form its correction family;
- claim 4 ("RCD reaches KD") needs equivalence within a stated margin (two one-sided tests), or rcd
  significantly more accurate than kd, each BY-corrected over the setups (one standard for both): "not
  significantly worse" is not enough;
- claim 7 is decided by the trigger's lift, a primary test of each backdoor setup.

A verdict says which way the evidence points: "supported", "not supported" (no significant evidence for
it), or "contradicted" (significant evidence of the opposite: transfer significant in every setup for claim
1, a gain significantly above the bound for claim 2, a larger share closed on A+ than on A- for claim 3, kd
significantly more accurate than rcd everywhere for claim 4, negative transfer for claim 5, a smaller ViT
gap for claim 6). Each rule returns (verdict, a short reason for the table, the full evidence).
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Optional

import pandas as pd

from ..models import CONVOLUTIONAL, family  # registry metadata: a model's family
from ..stats import ALPHA, by_adjust, equivalence_test, reachable, signed_rank_test

SUPPORTED, NOT_SUPPORTED = "supported", "not supported"
CONTRADICTED = "contradicted"  # the data show the opposite of the claim, significantly (not merely no support)
NOT_TESTED, NOT_TESTABLE = "not tested at this scale", "not testable at this seed count"
NOTHING_TO_JUDGE = "no significant transfer to judge"  # claims 2 and 3 ask about setups with significant transfer
NOT_FITTED = "not testable: teacher not fitted"  # claims 2 and 6: the setups that would decide have unfitted teachers
NOT_FITTED_STUDENTS = "not testable: students not fitted"  # claim 4: every setup's kd students are unfitted
JUDGED = (SUPPORTED, NOT_SUPPORTED, CONTRADICTED)  # verdicts that say something about the claim
NOT_RUN_READING = "not run under this reading"  # the setups ran at this scale, but not under this KD weight
NO_BACKDOOR = "no backdoor setup ran at this scale"
SMALL_TRANSFER_POINTS = 5.0  # "a few points of agreement over the control"
STRONG_BACKDOOR = 0.5  # the teacher's own lift: below it there is no backdoor worth asking about
FITTED = 0.99  # the default of the study file's fitted_train_accuracy (each summary carries its setup's value)

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

# The claims as the verdict table names them (two lines at most in its column); the full statements above are
# shown on hover and above each claim's evidence.
SHORT = {
    1: "Transfer is significant in some setups, not all",
    2: "Where significant, transfer is small",
    3: "Errors (A-) transfer more than right answers (A+)",
    4: "RCD reaches KD's accuracy",
    5: "ResNet-18 and VGG-19 gain agreement",
    6: "ViTs generalise worse than CNNs",
    7: "A teacher's backdoor reaches its student",
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


def num(x: float, spec: str = ".2f") -> str:
    """`format(x, spec)` without a negative zero: -0.004 to one decimal is "0.0", not "-0.0"."""
    out = format(x, spec)
    return out[1:] if out.startswith("-") and not any(ch in "123456789" for ch in out.split("e")[0]) else out


def _at_ceiling(r) -> bool:
    """The control disagrees with its teacher on fewer test examples per seed than the study file's
    `min_disagreements`: kd has almost nothing left to copy, so the setup says nothing about transfer."""
    return bool(r.get("control_disagreements", float("inf")) < r.get("min_disagreements", 1))


def _untestable_transfer(r) -> str:
    return (f"{r['id']} ({r.get('transfer_n_nonzero', '?')} of {r['n_seeds']} differences non-zero, smallest p "
            f"{num(r.get('transfer_min_p', float('nan')), '.2g')})")


def _claim1(groups, rules):
    reps = [r for r, _ in groups]
    if len(reps) < 2:
        return NOT_TESTED, f"{len(reps)} independent setup{'' if len(reps) == 1 else 's'}", \
            f"needs at least two independent setups; {len(reps)} ran"
    unfit = [r for r in reps if _students_unfitted(r)]
    fit = [r for r in reps if not _students_unfitted(r)]
    untestable = [r for r in fit if not r["transfer_testable"]]
    ceiling = [r for r in fit if r["transfer_testable"] and _at_ceiling(r)]
    judged = [r for r in fit if r["transfer_testable"] and not _at_ceiling(r)]
    notes = _students_note(unfit)
    if untestable:
        notes += (" Not testable (the kd > control agreement test cannot pass its family's correction with the "
                  "non-zero differences it kept): " + "; ".join(_untestable_transfer(r) for r in untestable) + ".")
    if ceiling:
        notes += (" At the ceiling, counted neither way (the control disagrees with its teacher on fewer than "
                  f"{ceiling[0]['min_disagreements']} test examples per seed): "
                  + "; ".join(f"{r['id']} ({num(r['control_disagreements'], '.1f')} per seed, "
                              f"{'significant' if r['significant_transfer'] else 'not significant'})" for r in ceiling) + ".")
    notes += _negative_transfer_note(reps)
    if len(judged) < 2:
        return NOT_TESTABLE, f"{len(judged)} of {len(reps)} setups testable", (
            f"{len(reps)} independent setups, {len(judged)} testable and away from the ceiling; claim 1 needs two." + notes)
    sig = [r for r in judged if r["significant_transfer"]]
    verdict = SUPPORTED if 0 < len(sig) < len(judged) else CONTRADICTED if sig else NOT_SUPPORTED
    return (verdict, f"significant in {len(sig)} of {len(judged)}"
            + (" (transfer everywhere)" if verdict == CONTRADICTED else ""),
            f"significant kd > control agreement (primary family, BY-corrected) in {len(sig)} of {len(judged)} "
            f"testable independent setups" + (f": {', '.join(_gain(r) for r in sig)}" if sig else "") + "."
            + (" The claim is that transfer is significant in some setups but not all: significant in every "
               "testable setup is the opposite." if verdict == CONTRADICTED else "") + notes
            + _sweeps_note(groups, lambda s: True, lambda s: f"{s['id']} {'significant' if s['significant_transfer'] else 'not significant'}"))


def _gain(r) -> str:
    """A setup's agreement gain in points and as the share of the control's headroom it closes."""
    share = r.get("agreement_share_closed", float("nan"))
    return (f"{r['id']} ({num(r['agreement_gain_points'], '+.2f')} points"
            + (f", {num(100 * share, '.0f')} % of the control's headroom" if share == share else "") + ")")


def _negative_transfer_note(reps) -> str:
    """Setups where kd is significantly *less* teacher-like than its control (one-sided, BY over the setups),
    named whatever the ceiling rule says."""
    ps = [r.get("negative_transfer_p", float("nan")) for r in reps]
    p_by = by_adjust(ps)
    neg = [(r, p) for r, p in zip(reps, p_by) if p <= ALPHA]
    if not neg:
        return ""
    return (" Negative transfer (kd significantly less teacher-like than its control; one-sided signed-rank test, "
            "BY over these setups): " + "; ".join(f"{_gain(r)}, p (BY) {num(p, '.2g')}" for r, p in neg) + ".")


def _significant(groups):
    return [r for r, _ in groups if r["transfer_testable"] and r["significant_transfer"]]


def _why_none_significant(groups) -> tuple[str, str, str]:
    """The verdict of claims 2 and 3, which ask about the significant setups, when there are none."""
    if not groups:
        return NOT_TESTED, "no setups ran", "no setups ran"
    if not any(r["transfer_testable"] for r, _ in groups):
        return NOT_TESTABLE, "no testable setup", \
            "no setup's kd > control agreement test can pass its correction with the differences it kept"
    n = sum(1 for r, _ in groups if r["transfer_testable"])
    return NOTHING_TO_JUDGE, f"0 of {n} significant", (
        f"the claim is about the setups with significant transfer, and none of the {n} testable independent setups "
        "shows it (claim 1's evidence)")


def _claim2(groups, rules):
    """"Small" is shown, not assumed: the gain must be significantly below the threshold (a one-sided signed-rank
    test of gain < threshold, i.e. its upper confidence bound lies below it). Every significant setup must show
    it (an intersection-union test: valid at alpha without correcting across setups). A setup whose control
    leaves less headroom than the threshold passes by construction, so it counts neither way."""
    sig = _significant(groups)
    if not sig:
        return _why_none_significant(groups)
    thr = rules.small_transfer_points
    parts, judged, above = [], [], []
    for x in sig:
        if _unfitted(x):
            parts.append(f"{x['id']}: not testable, teacher not fitted ({100 * x['teacher_train_accuracy']:.1f} % train; "
                         "its students copy its own training errors)")
            continue
        headroom = 100 * (1 - x["control_agreement"])
        if headroom < thr:
            parts.append(f"{x['id']}: at the ceiling, counted neither way (the control agrees with its teacher on "
                         f"{num(100 * x['control_agreement'], '.1f')} %, so the gain cannot reach {thr:g} points)")
            continue
        gains = [100 * g for g in x["agreement_gains"].values()]
        below = signed_rank_test([g - thr for g in gains], [0.0] * len(gains), "less")
        over = signed_rank_test([g - thr for g in gains], [0.0] * len(gains), "greater")
        head = _gain(x)
        if below["min_p"] > ALPHA:
            parts.append(f"{head}: not testable (gain < {thr:g}: {below['n_nonzero']} non-zero differences)")
            continue
        judged.append(below["p"] <= ALPHA)
        if over["p"] <= ALPHA:
            above.append(x["id"])
        parts.append(f"{head}: " + ("shown below" if below["p"] <= ALPHA else
                                    "significantly above" if over["p"] <= ALPHA else "not shown below")
                     + f" {thr:g} points (one-sided p, gain < {thr:g}: {num(below['p'], '.2g')}; gain > {thr:g}: "
                     f"{num(over['p'], '.2g')})")
    if not judged:
        if all(_unfitted(x) for x in sig):
            return NOT_FITTED, f"{len(sig)} significant, teacher{'s' if len(sig) > 1 else ''} not fitted", "; ".join(parts) + "."
        return NOT_TESTABLE, f"{len(sig)} significant, none testable", "; ".join(parts) + "."
    verdict = SUPPORTED if all(judged) else CONTRADICTED if above else NOT_SUPPORTED
    reason = (f"small in {sum(judged)} of {len(judged)}" if verdict != CONTRADICTED
              else f"above {thr:g} points in {len(above)} of {len(judged)}")
    return (verdict, reason, f"agreement gain of kd over control, judged on its one-sided tests against {thr:g} "
            "points (every significant setup must be shown below it; one significantly above it contradicts the claim): "
            + "; ".join(parts) + ".")


def _claim3(groups, rules):
    """Judged on the significant setups whose asymmetry test can pass the correction over them (`reachable`
    with its own non-zero differences); the others are named as not testable and leave the family."""
    sig = _significant(groups)
    if not sig:
        return _why_none_significant(groups)
    cands = [x for x in sig if x["asymmetry_p"] == x["asymmetry_p"]]
    reach = reachable([x["asymmetry_p"] for x in cands], [x.get("asymmetry_min_p", float("nan")) for x in cands])
    family = [x for x, ok in zip(cands, reach) if ok]
    untestable = [x for x in sig if not any(x is f for f in family)]
    p_by = by_adjust([x["asymmetry_p"] for x in family])
    p_rev = by_adjust([x.get("asymmetry_p_reverse", float("nan")) for x in family])
    parts, ok, opposite = [], 0, 0
    for x, pb, pr in zip(family, p_by, p_rev):
        holds = x["neg_rise_significant"] and pb <= ALPHA and x["neg_share_closed"] > x["pos_share_closed"]
        ok += holds
        opposite += bool(pr <= ALPHA)
        excl = f", {x['asymmetry_excluded']} seed(s) excluded (too few control disagreements or no teacher errors)" \
            if x["asymmetry_excluded"] else ""
        parts.append(f"{x['id']}: share of headroom closed A- {num(x['neg_share_closed'])} vs A+ {num(x['pos_share_closed'])} "
                     f"(A- > A+ p (BY over these setups) {num(pb, '.2g')}; A+ > A- p (BY) {num(pr, '.2g')}; rise of "
                     f"A- itself p (BY) {num(x['neg_rise_p_by'], '.2g')}{excl})")
    notes = [f"{x['id']}: not testable ({x['asymmetry_n']} seeds with both shares defined and a non-zero difference, "
             f"smallest p {num(x.get('asymmetry_min_p', float('nan')), '.2g')})" for x in untestable]
    if not family:
        return NOT_TESTABLE, f"{len(sig)} significant, none testable", "; ".join(notes) + "."
    verdict = SUPPORTED if ok == len(family) else CONTRADICTED if opposite else NOT_SUPPORTED
    reason = f"asymmetry in {ok} of {len(family)}" + (f", A+ > A- in {opposite}" if opposite else "")
    return (verdict, reason, f"{ok} of {len(family)} testable significant setups show the asymmetry"
            + (f", {opposite} the opposite (a larger share closed on the teacher's right answers)" if opposite else "")
            + "; " + "; ".join(parts + notes) + ".")


def _students_unfitted(r) -> bool:
    """Under this reading the kd students stay below the fitted threshold on their training set (as the
    teacher's rule, `fitted_train_accuracy`): they have not learned their data, so whether they copy the teacher
    or match rcd says little. Setups without the number (older summaries) count as fitted."""
    acc = r.get("kd_train_accuracy")
    return acc is not None and acc == acc and acc < r.get("fitted_train_accuracy", FITTED)


def _students_note(unfit) -> str:
    if not unfit:
        return ""
    return (" Counted neither way, the kd students not fitted under this reading (their training accuracy below "
            f"{100 * unfit[0].get('fitted_train_accuracy', FITTED):g} %): "
            + "; ".join(f"{r['id']} ({100 * r['kd_train_accuracy']:.1f} % train)" for r in unfit) + ".")


def _claim4(groups, rules):
    reps = [r for r, _ in groups]
    if not reps:
        return NOT_TESTED, "no setups ran", "no setups ran"
    unfit = [r for r in reps if _students_unfitted(r)]
    reps = [r for r in reps if not _students_unfitted(r)]
    if not reps:
        return NOT_FITTED_STUDENTS, "students not fitted", _students_note(unfit).strip()
    testable = [r for r in reps if r["equivalence_testable"]]
    if not testable:
        return NOT_TESTABLE, "no testable setup", \
            f"the equivalence test cannot reach p <= {ALPHA} with {sorted({r['n_seeds'] for r in reps})} seeds"
    # both ways of reaching kd are asked of every setup, each one family BY-corrected over the setups: the
    # equivalence (TOST) p-values and the "rcd significantly more accurate" ones, one standard for both
    equiv_by = by_adjust([r["rcd_kd_equivalence_p"] for r in testable])
    better_by = by_adjust([r["rcd_better_p"] for r in testable])
    parts, reached = [], []
    for r, pe, pb in zip(testable, equiv_by, better_by):
        equivalent, better = pe <= ALPHA, pb <= ALPHA
        if equivalent or better:
            reached.append(r["id"])
        parts.append(f"{r['id']}: rcd - kd accuracy {num(100 * r['rcd_kd_accuracy_diff'], '+.2f')} points, "
                     f"{'equivalent' if equivalent else 'not shown equivalent'} within "
                     f"±{100 * r['equivalence_margin']:g} (TOST p {num(r['rcd_kd_equivalence_p'], '.2g')}, "
                     f"BY over these setups {num(pe, '.2g')})"
                     + ("; rcd significantly more accurate" if better else "")
                     + f" (rcd > kd p (BY over these setups) {num(pb, '.2g')})")
    kd_better = [r["id"] for r in testable if r.get("kd_beats_rcd_accuracy")]
    verdict = SUPPORTED if reached else CONTRADICTED if len(kd_better) == len(testable) else NOT_SUPPORTED
    return (verdict, f"reaches kd in {len(reached)} of {len(testable)}"
            + (", kd more accurate in all" if verdict == CONTRADICTED else ""),
            f"rcd reaches kd in {len(reached)} of {len(testable)} independent setups: " + "; ".join(parts) + "."
            + (f" kd is significantly more accurate than rcd (its setup's test family, BY) in {len(kd_better)} of "
               f"{len(testable)}" + (f": {', '.join(kd_better)}" if kd_better else "") + ".") + _students_note(unfit))


PAPER_MODELS = {"ResNet": ("resnet18", {}), "VGG": ("vgg19", {})}  # claim 5 names ResNet-18 and VGG-19


def _claim5(groups, rules):
    """On CIFAR-10 self-distillation of each family: the paper's own ResNet-18 / VGG-19 where they ran,
    else the family's smaller members (said so in the evidence)."""
    by_family = {}
    for rep, sweeps in groups:
        for x in [rep] + sweeps:
            if x["dataset"] == "cifar10" and x["kind"] == "self" and x["variant"] == "logit":
                by_family.setdefault(family(x["student_model"]), []).append(x)
    if not set(PAPER_MODELS) <= set(by_family):
        return NOT_TESTED, "no CIFAR-10 ResNet and VGG", \
            "needs CIFAR-10 self-distillation with a ResNet and a VGG (the paper's ResNet-18 and VGG-19)"
    xs, smaller = {}, []
    for fam, (model, args) in PAPER_MODELS.items():
        own = [x for x in by_family[fam] if x["student_model"] == model and x.get("student_args", {}) == args]
        xs[fam] = (own or by_family[fam])[0]
        if not own:
            smaller.append(fam)
    if not all(x["transfer_testable"] for x in xs.values()):
        return NOT_TESTABLE, "too few non-zero differences", \
            "; ".join(_untestable_transfer(x) for x in xs.values() if not x["transfer_testable"])
    ok = all(x["significant_transfer"] for x in xs.values())
    n_sig = sum(x["significant_transfer"] for x in xs.values())
    negative = [x["id"] for x in xs.values() if x.get("negative_transfer_p", 1.0) <= ALPHA]
    note = (f" Judged on smaller members of the {' and '.join(smaller)} famil{'ies' if len(smaller) > 1 else 'y'} "
            "(narrower / shallower than the paper's ResNet-18 / VGG-19), trained on the CPU." if smaller else "")
    verdict = SUPPORTED if ok else CONTRADICTED if negative else NOT_SUPPORTED
    return verdict, f"significant in {n_sig} of 2" + (f", negative in {len(negative)}" if negative else ""), "; ".join(
        f"{x['id']} ({x['student_model']} {x.get('student_args') or ''}): agreement gain "
        f"{num(x['agreement_gain_points'], '+.2f')} points, p (BY) {num(x['agreement_p_by'], '.2g')}"
        + (f"; kd significantly less teacher-like than the control (one-sided p {num(x['negative_transfer_p'], '.2g')})"
           if x["id"] in negative else "")
        for x in xs.values()) + "." + note


def _claim6(groups, rules):
    """Teachers' generalisation gaps, ViT against each CNN on the same data, with the same number of
    epochs and the same optimiser, paired by seed."""
    teachers = [r for r, _ in groups]
    out, untestable, unfitted_pairs = [], [], []
    for v in [t for t in teachers if family(t["teacher_model"]) == "ViT"]:
        for c in [t for t in teachers if family(t["teacher_model"]) in CONVOLUTIONAL and t["dataset"] == v["dataset"]
                  and t["epochs"] == v["epochs"] and t.get("optimizer") == v.get("optimizer")]:
            if _unfitted(v) or _unfitted(c):  # a capped gap decides nothing: the pair is named, not tested
                unfitted_pairs.append((v, c))
                continue
            seeds = sorted(set(v["teacher_gaps"]) & set(c["teacher_gaps"]))
            vg, cg = [v["teacher_gaps"][s] for s in seeds], [c["teacher_gaps"][s] for s in seeds]
            res = signed_rank_test(vg, cg, "greater")
            res["p_reverse"] = signed_rank_test(vg, cg, "less")["p"]
            (out if res["min_p"] <= ALPHA else untestable).append((v, c, res, seeds))
    named = {id(t): t for pair in unfitted_pairs for t in pair if _unfitted(t)}
    not_fitted = ("" if not named else " Not testable, teacher not fitted (its gap is capped): "
                  + "; ".join(f"{t['id']} ({100 * t['teacher_train_accuracy']:.1f} % train)" for t in named.values()) + ".")
    if not out and not untestable and unfitted_pairs:
        return NOT_FITTED, "teacher not fitted", ("no matched ViT and CNN pair whose teachers both fit their training "
                                                  "set." + not_fitted)
    if not out and not untestable:
        return NOT_TESTED, "no matched ViT and CNN", ("needs a ViT and a CNN teacher on the same dataset with the same "
                                                      "number of epochs and the same optimiser")
    if not out:
        return NOT_TESTABLE, "too few seeds", "too few seeds (non-zero gap differences) to test the gap difference"
    larger = sum(res["p"] <= ALPHA for _, _, res, _ in out)
    smaller = sum(res["p_reverse"] <= ALPHA for _, _, res, _ in out)
    verdict = SUPPORTED if larger == len(out) else CONTRADICTED if smaller else NOT_SUPPORTED
    reason = f"ViT gap larger in {larger} of {len(out)}" + (f", smaller in {smaller}" if smaller else "")
    return verdict, reason, "; ".join(
        f"{v['dataset']}: ViT gap {num(v['teacher_gap'], '.1f')}{_unfitted(v)} vs {c['teacher_model']} "
        f"{num(c['teacher_gap'], '.1f')} points{_unfitted(c)} "
        f"({len(seeds)} seeds, {v['epochs']} epochs of {v.get('optimizer')} each; ViT larger: one-sided p "
        f"{num(res['p'], '.2g')}; ViT smaller: {num(res['p_reverse'], '.2g')})"
        for v, c, res, seeds in out) + "." + not_fitted


def _unfitted(teacher) -> str:
    """A teacher below its setup's fitted threshold (the study file's `fitted_train_accuracy`) has not fitted its
    training set: its gap is capped and its students copy its training errors. "" where it fits."""
    acc = teacher.get("teacher_train_accuracy")
    thr = teacher.get("fitted_train_accuracy", FITTED)
    return "" if acc is None or acc >= thr else f" (train accuracy {100 * acc:.1f} %, below {100 * thr:g} %: not fitted)"


def _claim7(groups, rules):
    """Decided by the trigger's lift (attack success minus the base rate of predicting the target on the
    same clean inputs), kd > control, a primary test of the backdoor setup: a student merely biased towards
    the target class raises attack success too, so attack success is shown but does not decide."""
    bd = [r for r, _ in groups if r.get("has_backdoor")]
    if not bd:
        return NOT_TESTED, "no backdoor setup", NO_BACKDOOR

    def line(x):
        fam = "primary family" if x.get("backdoor_lift_primary") else "exploratory family"
        decided = "significant" if x["backdoor_lift_transfers"] else "not significant"
        return (f"{x['id']}: decided by the trigger's lift over the base rate, kd > control p (BY, {fam}) "
                f"{num(x['backdoor_lift_kd_vs_control_p_by'], '.2g')}, {decided} (lift: teacher "
                f"{num(100 * x['teacher_backdoor_lift'], '.1f')}, control {num(100 * x['control_backdoor_lift'], '.1f')}, kd "
                f"{num(100 * x['kd_backdoor_lift'], '.1f')} points); attack success, shown but not deciding: teacher "
                f"{num(100 * x['teacher_backdoor_asr'], '.1f')} %, control {num(100 * x['control_backdoor_asr'], '.1f')} %, "
                f"kd {num(100 * x['kd_backdoor_asr'], '.1f')} %, rcd {num(100 * x['rcd_backdoor_asr'], '.1f')} % "
                f"(kd > control p (BY, exploratory) {num(x['backdoor_kd_vs_control_p_by'], '.2g')})")

    strong = [x for x in bd if x["teacher_backdoor_lift"] >= rules.strong_backdoor_lift]
    if not strong:
        return NOT_TESTED, "no teacher learned its backdoor", (
            f"no teacher learned its backdoor (lift >= {100 * rules.strong_backdoor_lift:.0f} points); "
            + "; ".join(line(x) for x in bd))
    testable = [x for x in strong if x.get("backdoor_lift_testable")]
    if not testable:
        return NOT_TESTABLE, "lift test cannot reach significance", "; ".join(line(x) for x in strong)
    ok = [x for x in testable if x["backdoor_lift_transfers"]]
    return (SUPPORTED if ok else NOT_SUPPORTED, f"lift transfers in {len(ok)} of {len(testable)}",
            "; ".join(line(x) for x in strong))


RULES = {1: _claim1, 2: _claim2, 3: _claim3, 4: _claim4, 5: _claim5, 6: _claim6, 7: _claim7}


@dataclass(frozen=True)
class Rules:
    """The reconstructed thresholds the claim rules use. None: each setup's own value from the study file."""
    small_transfer_points: float = SMALL_TRANSFER_POINTS  # claim 2's bound on the gain
    strong_backdoor_lift: float = STRONG_BACKDOOR         # claim 7: the teacher's lift from which it learned its backdoor
    min_disagreements: Optional[int] = None               # claim 1's ceiling
    equivalence_margin: Optional[float] = None            # claim 4's TOST margin (a fraction of accuracy)
    fitted_train_accuracy: Optional[float] = None         # claims 2 and 6: a fitted teacher

    def apply(self, summaries: list[dict]) -> list[dict]:
        """The summaries as the per-setup thresholds make them: the TOST recomputed from the per-seed accuracies
        at another margin."""
        out = []
        for x in summaries:
            x = dict(x)
            if self.min_disagreements is not None:
                x["min_disagreements"] = self.min_disagreements
            if self.fitted_train_accuracy is not None:
                x["fitted_train_accuracy"] = self.fitted_train_accuracy
            if self.equivalence_margin is not None and x.get("kd_accuracies"):
                seeds = sorted(set(x["kd_accuracies"]) & set(x["rcd_accuracies"]))
                eq = equivalence_test([x["rcd_accuracies"][s] for s in seeds], [x["kd_accuracies"][s] for s in seeds],
                                      self.equivalence_margin)
                x.update(rcd_kd_equivalence_p=eq["p"], rcd_kd_equivalent=eq["equivalent"],
                         equivalence_margin=self.equivalence_margin, equivalence_testable=bool(eq["min_p"] <= ALPHA))
            out.append(x)
        return out


# What each reconstructed threshold is varied over (the study file's value is one of them).
SENSITIVITY = {
    "min_disagreements": (5, 10, 20),
    "small_transfer_points": (2.0, 5.0, 10.0),
    "equivalence_margin": (0.005, 0.01, 0.02),
    "fitted_train_accuracy": (0.95, 0.99),
    "strong_backdoor_lift": (0.25, 0.5, 0.75),
}
SENSITIVITY_CLAIMS = {"min_disagreements": (1,), "small_transfer_points": (2,), "equivalence_margin": (4,),
                      "fitted_train_accuracy": (1, 2, 4, 6), "strong_backdoor_lift": (7,)}


def _verdict_of(summaries: list[dict], rules: Optional[Rules] = None) -> dict:
    """claim -> verdict, from one evaluation of the rules."""
    v = verdicts(summaries, rules)
    return dict(zip(v["claim"], v["verdict"]))


def sensitivity(columns: dict[str, list[dict]], grid: dict = SENSITIVITY) -> dict:
    """(column, claim) -> "robust", or what the verdict depends on: every threshold of `grid` varied alone over its
    values, every verdict recomputed from the same summaries."""
    out = {}
    for col, summaries in columns.items():
        base = _verdict_of(summaries)
        changes = {k: [] for k in base}
        for name, values in grid.items():
            for v in values:
                alt = _verdict_of(summaries, Rules(**{name: v}))
                for k in base:
                    if alt[k] != base[k]:
                        changes[k].append(f"{name} = {v:g}: {alt[k]}")
        for k in base:
            out[(col, k)] = "robust" if not changes[k] else "depends on " + "; ".join(changes[k])
    return out


def verdicts(summaries: list[dict], rules: Optional[Rules] = None) -> pd.DataFrame:
    """Claims 1-6 are judged on the setups with a clean teacher; claim 7 on the backdoor setups."""
    rules = rules or Rules()
    summaries = rules.apply(summaries)
    clean = independent_groups([x for x in summaries if not x.get("has_backdoor")])
    allg = independent_groups(summaries)
    rows = []
    for k, text in CLAIMS.items():
        verdict, reason, evidence = RULES[k](allg if k == 7 else clean, rules)
        rows.append({"claim": k, "statement": text, "verdict": verdict, "reason": reason, "evidence": evidence})
    return pd.DataFrame(rows)


def verdict_matrix(columns: dict[str, list[dict]]) -> tuple[pd.DataFrame, dict]:
    """See `verdict_table`; the matrix and the evidence texts (without the short reasons)."""
    matrix, evidence, _ = verdict_table(columns)
    return matrix, evidence


def verdict_table(columns: dict[str, list[dict]]) -> tuple[pd.DataFrame, dict, dict]:
    """Verdicts side by side, one column per body of evidence (e.g. scale x reading of the KD weight,
    named "<scale>, w=<weight>"), a `flips` column naming where a claim's verdict differs between readings
    of the same scale; and the evidence texts, keyed by (column, claim). Claim 7 reads "not run under this
    reading" (not "not tested at this scale") where a backdoor setup ran at the scale under another reading."""
    table, evidence, reasons = {}, {}, {}
    for col, summaries in columns.items():
        v = verdicts(summaries)
        table[col] = dict(zip(v["claim"], v["verdict"]))
        for k, e, why in zip(v["claim"], v["evidence"], v["reason"]):
            evidence[(col, k)], reasons[(col, k)] = e, why
    out = pd.DataFrame(table)
    out.index.name = "claim"
    scales = {}
    for col in columns:
        scales.setdefault(col.split(",")[0], []).append(col)
    for cols in scales.values():
        ran = [c for c in cols if any(x.get("has_backdoor") for x in columns[c])]
        for c in cols:
            if ran and c not in ran and evidence[(c, 7)] == NO_BACKDOOR:
                out.loc[7, c] = NOT_RUN_READING
                reasons[(c, 7)] = "backdoor ran under another reading"
                evidence[(c, 7)] = (f"the backdoor setups of this scale ran under {', '.join(_reading(r) for r in ran)} "
                                    "only, not under this reading")
    flips = []  # a verdict that changes between judged ones (supported, not, contradicted), not one merely untested
    for k in out.index:
        f = [s for s, cols in scales.items()
             if len({out.loc[k, c] for c in cols if out.loc[k, c] in JUDGED}) > 1]
        flips.append(", ".join(f) if f else "")
    out["flips between readings"] = flips
    out.insert(0, "statement", [CLAIMS[k] for k in out.index])
    return out, evidence, reasons


def _reading(col: str) -> str:
    """"cpu, w=0.9" -> "w=0.9" (the column's reading of alpha)."""
    return col.split(",", 1)[1].strip() if "," in col else col


def verdict_columns(matrix: pd.DataFrame) -> list[str]:
    return [c for c in matrix.columns if c not in ("statement", "flips between readings")]


def flips_sentence(matrix: pd.DataFrame) -> str:
    """One sentence naming, for each claim whose verdict flips, every column of each scale concerned once:
    "claim 1 (cpu: w=0.9 supported, w=0.1 not supported)"."""
    cols = verdict_columns(matrix)
    items = []
    for k, row in matrix[matrix["flips between readings"] != ""].iterrows():
        per_scale = []
        for scale in row["flips between readings"].split(", "):
            mine = [c for c in cols if c.split(",")[0] == scale]
            per_scale.append(f"{scale}: " + ", ".join(f"{_reading(c)} {row[c]}" for c in mine))
        items.append(f"claim {k} ({'; '.join(per_scale)})")
    if not items:
        return "No verdict flips between the readings of alpha."
    return "**Verdicts that flip between the readings of alpha**: " + "; ".join(items) + "."


def regime_sentences(matrix: pd.DataFrame, low: str = "mid", high: str = "full") -> str:
    """Claim by claim and reading by reading, whether the verdict on the 5,000-image entries (`low`) changes on the
    full-data entries (`high`), the teacher nearer the paper's regime; written from the verdict matrix."""
    cols = verdict_columns(matrix)
    readings = [_reading(c) for c in cols if c.split(",")[0] == high]
    if not readings:
        return (f"No `{high}` column in this build: the full-data entries are not complete yet, so no verdict can be "
                "compared across regimes.")
    lines = []
    for k in matrix.index:
        parts = []
        for r in readings:
            a, b = f"{low}, {r}", f"{high}, {r}"
            if a not in matrix.columns:
                parts.append(f"{r}: {matrix.loc[k, b]} at full data ({low} has no column)")
            elif matrix.loc[k, a] == matrix.loc[k, b]:
                parts.append(f"{r}: unchanged ({matrix.loc[k, b]})")
            else:
                parts.append(f"{r}: **{matrix.loc[k, a]} -> {matrix.loc[k, b]}**")
        lines.append(f"- claim {k}: " + "; ".join(parts))
    return "\n".join(lines)


def anchor(col: str, claim: int) -> str:
    """The HTML id of the evidence block of one verdict (column x claim)."""
    slug = "-".join("".join(ch if ch.isalnum() else " " for ch in col.lower()).split())
    return f"claim-{claim}-{slug}"


def linked_matrix(matrix: pd.DataFrame, reasons: dict | None = None) -> pd.DataFrame:
    """The matrix with each verdict cell a link to its evidence block (`anchor`), its short reason below it;
    each claim by its short statement, the full one on hover."""
    out = matrix.copy()
    reasons = reasons or {}
    out["statement"] = [f'<span title="{html.escape(CLAIMS[k])}">{html.escape(SHORT[k])}</span>' for k in matrix.index]
    for c in verdict_columns(matrix):
        out[c] = [f'<a href="#{anchor(c, k)}">{html.escape(v)}</a>'
                  + (f'<br><small>{html.escape(reasons[(c, k)])}</small>' if reasons.get((c, k)) else "")
                  for k, v in matrix[c].items()]
    return out


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
            elif NOT_SUPPORTED in vs or CONTRADICTED in vs:
                word = "disagrees (" + ", ".join(f"claim {k} {v}" for k, v in zip(claims, vs)
                                                 if v in (NOT_SUPPORTED, CONTRADICTED)) + ")"
            else:
                word = "cannot say (" + ", ".join(f"claim {k} {v}" for k, v in zip(claims, vs) if v != SUPPORTED) + ")"
            parts.append(f"{_reading(c)}: {word}")
        return "; ".join(parts)

    lines = [f"- *{text}* (claim{'s' if len(ks) > 1 else ''} {', '.join(map(str, ks))}): {agreement(ks)}."
             for text, ks in ABSTRACT]
    return "\n".join(lines)


def _column_scale(col: str) -> str:
    return col.split(",")[0]


def linked_text(col: str, text: str, columns: dict[str, list[dict]]) -> str:
    """Text about one column (a verdict's evidence, a cell of the independence table) as HTML, each entry of
    the column it names a link to that entry's chapter."""
    from .formatting import link_entries

    return link_entries(html.escape(text), _column_scale(col), [x["id"] for x in columns.get(col, [])])


def evidence_html(col: str, text: str, columns: dict[str, list[dict]]) -> str:
    """A verdict's evidence as an HTML paragraph, with its entries linked (`linked_text`)."""
    return f"<p>{linked_text(col, text, columns)}</p>"


def columns_by_reading(matrix: pd.DataFrame, readings) -> list[tuple[float, dict]]:
    """(reading, {verdict column: its scale}) per reading of alpha that has columns, in the order given:
    the claims page's tables, one per reading."""
    out = []
    for w in readings:
        cols = {c: _column_scale(c) for c in verdict_columns(matrix) if _reading(c) == f"w={w:g}"}
        if cols:
            out.append((w, cols))
    return out


def claims_naming(columns: dict[str, list[dict]], texts: dict, matrix: pd.DataFrame) -> dict:
    """(scale, entry id) -> [(claim, column, verdict)]: the verdicts whose evidence names the entry, as
    `linked_text` links it (the way back from a chapter to the claims that use it)."""
    from .formatting import entry_pattern

    out: dict = {}
    order = {col: i for i, col in enumerate(columns)}  # the study's order: each scale's main reading first
    for (col, k), text in sorted(texts.items(), key=lambda kv: (kv[0][1], order.get(kv[0][0], len(order)))):
        pattern = entry_pattern(x["id"] for x in columns.get(col, []))
        named = {m.group(1) for m in pattern.finditer(text)} if pattern else set()
        for x in columns.get(col, []):
            if x["id"] in named:
                out.setdefault((_column_scale(col), x["id"]), []).append((k, col, matrix.loc[k, col]))
    return out


def backlinks_html(items: list, claims_page: str = "../claims.html") -> str:
    """A chapter's paragraph naming the verdicts that use its runs, each a link to its evidence block."""
    if not items:
        return ("<p><b>Claims that use this entry:</b> none; no verdict's evidence names it in this build (entries "
                "distilled with another KD objective than Hinton's are compared in the chapter on KD objectives).</p>")
    by_claim: dict = {}
    for k, col, verdict in items:
        by_claim.setdefault(k, []).append(
            f'<a href="{claims_page}#{anchor(col, k)}">{html.escape(_reading(col))}: {html.escape(verdict)}</a>')
    return ("<p><b>Claims that use this entry</b> (its runs are named in the evidence of these verdicts): "
            + "; ".join(f'claim {k}, <i>{html.escape(SHORT[k])}</i> ({", ".join(links)})' for k, links in by_claim.items())
            + ".</p>")
