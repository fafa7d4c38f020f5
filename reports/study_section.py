"""Section 6 of the HTML report, the human study: what `reports/templates/study.html.j2` shows.

Fool rates with their one interval (two-way cluster-robust over raters and images, docs/studies.md), the
exclusions per quality rule, the power the design had, and per task the Bradley-Terry ranking (plot with
CIs), the win matrix, the metric-agreement table (which metric best predicts raters) and the inter-rater
reliability; each part with one plain-language sentence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from evalsuite.numbers import finite
from reports import images as I
from reports import plots
from reports.paper import paper_table

DASH = "\u2014"
RULE_TITLES = {"catch": "catch trials failed", "too_fast": "too fast", "side_streak": "same side in a row",
               "answer_streak": "not-real image in a row"}


def pct(v: Any) -> str:
    """A share as a percentage with one decimal, a dash when missing."""
    f = finite(v)
    return DASH if f is None else f"{100 * f:.1f}%"


def pval(v: Any) -> str:
    """A p-value with 3 significant digits, '< 0.0001' below that."""
    f = finite(v)
    return DASH if f is None else (f"{f:.3g}" if f >= 1e-4 else "< 0.0001")


def num(v: Any, digits: int = 2) -> str:
    """A number with `digits` decimals, a dash when missing (no "-0.00": + 0.0 turns a rounded -0.0 into 0.0)."""
    f = finite(v)
    return DASH if f is None else f"{round(f, digits) + 0.0:.{digits}f}"


def task_label(task: Any) -> str:
    """A 2AFC task number with its question (SR3: task 1 shows the LR input, task 2 does not)."""
    try:
        t = int(task)
    except (TypeError, ValueError):
        return str(task)
    short = {1: "LR shown: better HR version?", 2: "no LR: which is from a camera?"}
    return f"{t} ({short[t]})" if t in short else str(t)


def fool_rows(fr: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per (method, task): counts, the fool rate, its interval and the test against 50%."""
    return [
        {
            "method": str(r["method"]), "task": task_label(r.get("task")), "task_id": str(r.get("task")),
            "n_judgments": int(r["n_judgments"]), "n_raters": int(r["n_raters"]),
            "fool_rate": finite(r["fool_rate"]), "rate": pct(r["fool_rate"]),
            "ci": f"{pct(r.get('ci_low'))} \u2013 {pct(r.get('ci_high'))}",
            "p": pval(r.get("p_value_vs_50")),
        }
        for _, r in fr.iterrows()
    ]


def fool_reading(fr: pd.DataFrame) -> str:
    """One sentence: the method that fooled raters most, its interval, and what the interval supports."""
    if fr.empty:
        return "No fool rates yet: the study has no judgments."
    best = fr.sort_values("fool_rate", ascending=False).iloc[0]
    ci = f"95% CI {pct(best['ci_low'])} to {pct(best['ci_high'])}"
    text = (f"{best['method']} fooled raters most: they chose its output over the real image in "
            f"{pct(best['fool_rate'])} of {int(best['n_judgments'])} trials by {int(best['n_raters'])} raters ({ci})")
    lo, hi = finite(best.get("ci_low")), finite(best.get("ci_high"))
    highs = [finite(v) for v in fr.get("ci_high", pd.Series(dtype=float))]
    if highs and all(h is not None and h < 0.5 for h in highs):
        text += "; every method's upper bound is below 50%, so raters could tell every method from the real images"
    elif lo is not None and lo > 0.5:
        text += "; its whole interval is above 50%: raters preferred it to the real image"
    elif hi is not None and lo is not None:
        text += (f"; its interval includes 50%, so it is not distinguishable from the real images at this "
                 f"sample size ({ci}), which does not show that it is indistinguishable")
    return text + "."


def counts_sentence(analysis: Any) -> str:
    """Judgments and raters after the exclusions, with the excluded raters and their judgments shown."""
    raters, fr = analysis.raters, analysis.fool_rates
    n = len(raters)
    out = raters[raters["excluded"].astype(bool)] if n else raters
    n_judged = int(fr["n_judgments"].sum()) if len(fr) else 0
    if getattr(analysis, "all_excluded", False):
        return (f"{n_judged} method-vs-real judgments by all {n} raters: every rater failed the exclusion rules, "
                "so none was excluded (labelled below).")
    kept = n - len(out)
    text = f"{n_judged} method-vs-real judgments by the {kept} raters kept"
    if len(out):
        text += (f"; {len(out)} of {n} raters excluded, with their {int(out['n_judgments'].sum())} main-block "
                 "judgments (rules below)")
    else:
        text += f"; no rater excluded (of {n})"
    return text + "."


def exclusion_part(analysis: Any) -> dict[str, Any]:
    """How many raters each quality rule flagged, the raters, and a sentence."""
    raters = analysis.raters
    counts = list((analysis.study or {}).get("exclusions") or [])
    n, n_out = len(raters), int(raters["excluded"].astype(bool).sum()) if len(raters) else 0
    rows = [{"rule": RULE_TITLES.get(c["rule"], c["rule"]), "text": c["text"], "n": c["n_raters"],
             "only": c["n_only"]} for c in counts]
    if not counts and n_out:  # an analysis folder saved before per-rule counts existed
        reading = f"{n_out} of {n} raters were excluded (per-rule counts: rerun `evalsuite study analyze`)."
    elif not counts:
        reading = f"No rater was excluded: the analysis kept all {n} raters (no exclusion rule applied)."
    else:
        per = ", ".join(f"{r['rule']} {r['n']}" for r in rows)
        reading = (f"{n_out} of {n} raters were excluded by the rules fixed when the study was created "
                   f"({per}; a rater may break several rules).")
    if getattr(analysis, "all_excluded", False):
        reading += " Since that is every rater, the numbers above keep them all, labelled."
    return {"rows": rows, "reading": reading, "raters": rater_rows(raters)}


def rater_rows(raters: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per rater: judgments, catch accuracy, median response time, streaks, rules broken."""
    return [
        {"id": r.get("rater_label") or r["rater_id"], "n": int(r["n_judgments"]), "catch": pct(r["catch_accuracy"]),
         "rt": num(r.get("median_rt_s")), "side": r.get("side_streak", DASH), "answer": r.get("answer_streak", DASH),
         "excluded": bool(r["excluded"]), "why": str(r.get("excluded_by") or "").replace(";", ", ")}
        for _, r in raters.iterrows()
    ]


def extremes_part(analysis: Any, run_dir: Path, n_worst: int) -> list[dict[str, Any]]:
    """Per method and task: the images that fooled raters most and least, with thumbnails."""
    per = analysis.per_image
    # k best and k worst per method: at most half the images each, so the two lists never overlap.
    fewest = int(per.groupby(["task", "method"]).size().min()) if len(per) else 0
    ext = analysis.extremes(max(1, min(n_worst, fewest // 2)))
    out = []
    for (t, m), d in ext.groupby(["task", "method"], sort=True):
        def items(part: pd.DataFrame, method: str = str(m)) -> list[dict[str, Any]]:
            found = []
            for _, r in part.iterrows():
                sr = run_dir / "outputs" / method / f"{r['image_id']}.png"
                found.append({"id": str(r["image_id"]), "rate": pct(r["fool_rate"]), "n": int(r["n_judgments"]),
                              "sr": I.thumbnail_uri(sr) if sr.exists() else None})
            return found

        out.append({"method": str(m), "task": task_label(t), "best": items(d[d["which"] == "best"]),
                    "worst": items(d[d["which"] == "worst"])})
    return out


def comparison_rows(comparisons: pd.DataFrame) -> list[dict[str, Any]]:
    """Method against method: the difference of fool rates, its interval and the Holm-adjusted p-value."""
    return [
        {"a": r["method_a"], "b": r["method_b"], "task": task_label(r.get("task")),
         "diff": f"{100 * float(r['difference']):+.1f}",
         "ci": f"{100 * float(r['ci_low']):+.1f} to {100 * float(r['ci_high']):+.1f}"
         if finite(r.get("ci_low")) is not None else DASH,
         "p": pval(r.get("p_holm")), "p_raw": pval(r.get("p_value")), "reading": comparison_reading(r)}
        for _, r in comparisons.iterrows()
    ]


def comparison_reading(r: Any) -> str:
    """One comparison in words, decided by the Holm-adjusted p-value at 5%."""
    diff = 100 * float(r["difference"])
    p = finite(r.get("p_holm"))
    if p is None:
        return "no test (too few raters or images)"
    ci = f"95% CI {100 * float(r['ci_low']):+.1f} to {100 * float(r['ci_high']):+.1f} points"
    if p < 0.05:
        more = r["method_a"] if diff > 0 else r["method_b"]
        return f"{more} fooled raters more ({diff:+.1f} points, {ci}; Holm-adjusted p {pval(p)})"
    return f"not distinguishable at this sample size ({diff:+.1f} points, {ci}; Holm-adjusted p {pval(p)})"


def ranking_part(ext: Any) -> dict[str, Any]:
    """One task's Bradley-Terry scores with CIs and the win matrix, as tables and plots."""
    from studies.ranking import ranking_plot, win_matrix_plot

    rows = [
        {"option": str(r["option"]), "rank": DASH if pd.isna(r["rank"]) else int(r["rank"]), "score": num(r["score"]),
         "ci": f"{num(r['ci_low'])} to {num(r['ci_high'])}", "n": int(r["n_comparisons"]),
         "note": str(r.get("note") or "")}
        for _, r in ext.ranking.scores.iterrows()
    ]
    # The win matrix in ranking order (best first), options never compared left out.
    order = [o for o in ext.ranking.scores["option"] if ext.ranking.totals.loc[o].sum() > 0]
    table = ext.ranking.win_table().loc[order, order]
    win = {"columns": [str(c) for c in table.columns],
           "rows": [{"option": str(i), "cells": [str(v) for v in table.loc[i]]} for i in table.index]}
    return {"rows": rows, "plot": ranking_plot(ext.ranking), "win": win, "win_plot": win_matrix_plot(ext.ranking),
            "reference": ext.ranking.reference}  # None: a duels-only study, scores centred on their mean


def agreement_part(ext: Any) -> dict[str, Any] | None:
    """The metric-agreement table (None when the run's per-image metrics were not available)."""
    if ext.agreement is None:
        return None
    rows = [
        {"metric": str(r["metric"]), "better": r["better"], "kind": r["kind"], "basis": r["basis"],
         "n": DASH if pd.isna(r["n_trials"]) else int(r["n_trials"]), "agreement": pct(r["agreement"]),
         "ci": DASH if pd.isna(r["ci_low"]) else f"{pct(r['ci_low'])} \u2013 {pct(r['ci_high'])}",
         "rho": num(r["spearman_rho"]),
         "note": str(r.get("note") or "")}
        for _, r in ext.agreement.table.iterrows()
    ]
    return {"rows": rows}


def reliability_rows(ext: Any) -> list[dict[str, Any]]:
    """Krippendorff's alpha and the split-half reliabilities."""
    names = {"krippendorff_alpha": "Krippendorff's alpha (single trials)",
             "split_half_method": "split-half, per method", "split_half_method_image": "split-half, per method x image"}
    return [
        {"measure": names.get(r["measure"], r["measure"]), "value": num(r["value"]),
         "range": DASH if pd.isna(r["low"]) else f"{num(r['low'])} to {num(r['high'])}", "n": int(r["n_units"])}
        for _, r in ext.reliability.iterrows()
    ]


def task_part(task: int, ext: Any) -> dict[str, Any]:
    """Everything shown for one task beyond fool rates, with the readings."""
    from studies.extended import metric_verdict

    readings = ext.readings()
    return {"task": task_label(task), "task_id": int(task), "ranking": ranking_part(ext),
            "agreement": agreement_part(ext), "reliability": reliability_rows(ext), "readings": readings,
            "verdict": metric_verdict(ext), "notes": list(ext.notes)}


def study_section(analysis: Any, run_dir: Path, manifest: dict, n_worst: int) -> dict[str, Any]:
    """Section 6's context: fool rates, exclusions, power, and per task ranking, agreement and reliability."""
    fr, study = analysis.fool_rates, dict(analysis.study or {})
    paper = paper_table((manifest.get("task") or {}).get("name"))
    catch = pd.to_numeric(analysis.raters.get("catch_accuracy", pd.Series([], dtype=float)), errors="coerce")
    tasks = [task_part(t, e) for t, e in sorted((getattr(analysis, "extended", None) or {}).items())]
    # The analysis' notes, then each task's, each once (the tasks share their method notes).
    notes = list(dict.fromkeys([*(analysis.notes or []), *(n for t in tasks for n in t["notes"])]))
    return {
        "rows": fool_rows(fr), "reading": fool_reading(fr), "plot": plots.fool_rates(fr),
        "counts": counts_sentence(analysis),
        "n_raters": len(analysis.raters), "all_excluded": bool(getattr(analysis, "all_excluded", False)),
        "exclusions": exclusion_part(analysis),
        "n_excluded": int(analysis.raters["excluded"].astype(bool).sum()) if len(analysis.raters) else 0,
        "mean_catch": pct(float(catch.mean())) if catch.notna().any() else DASH,
        "extremes": extremes_part(analysis, run_dir, n_worst), "comparisons": comparison_rows(analysis.comparisons),
        "tasks": tasks,
        "skipped": dict(study.get("extended_skipped") or {}), "power": study.get("power"),
        "notes": notes,
        "items": [(k, v if not isinstance(v, (list, dict)) else json.dumps(v, default=str))
                  for k, v in study.items() if k not in ("studies", "exclusions")],
        "n_judgments": int(fr["n_judgments"].sum()) if len(fr) else 0,
        "paper_human": paper.human if paper else None,
    }


__all__ = ["comparison_reading", "counts_sentence", "fool_reading", "pct", "pval", "study_section", "task_label"]
