"""What `evalsuite study analyze` prints: fool rates, exclusions per rule, ranking, win matrix, metric
agreement and reliability, each table followed by its one-sentence reading."""

from __future__ import annotations

from typing import Any

import pandas as pd

_FLOAT = "{:.3f}".format  # numbers in the printed tables


def _table(df: pd.DataFrame, cols: list[str]) -> str:
    """A frame's columns as aligned text, floats to 3 decimals, missing values as '-'."""
    shown = df[[c for c in cols if c in df]].astype(object)
    shown = shown.map(lambda v: "-" if v is None or (isinstance(v, float) and pd.isna(v))
                      else _FLOAT(v) if isinstance(v, float) else v)
    return shown.to_string(index=False)


def print_fool_rates(result: Any) -> None:
    """Fool rates with their interval, method comparisons (Holm-adjusted) and per-image extremes."""
    if result.all_excluded:
        print(
            f"WARNING: every rater ({len(result.raters)}) fails the exclusion rules; the fool rates below are "
            "WITHOUT exclusion (pass --min-catch-accuracy or --no-exclusion to choose)"
        )
    if result.fool_rates.empty:
        print("no judgments yet")
        return
    print("fool rates (ci_low/high: 95% interval, two-way cluster-robust over raters and images):")
    print(_table(result.fool_rates, ["method", "task", "n_judgments", "n_raters", "fool_rate", "ci_low",
                                     "ci_high", "p_value_vs_50"]))
    methods = result.study.get("methods")
    missing = [m for m in methods if m not in set(result.fool_rates["method"])] if isinstance(methods, list) else []
    if missing and all(isinstance(m, str) for m in missing):
        print(f"no fool rate for {', '.join(missing)}: no judged method-vs-real trial of it from a kept rater yet")
    if len(result.comparisons):
        print()
        print("method against method (difference of fool rates, 95% interval; p_holm: Holm-adjusted over the "
              "task's pairs):")
        print(_table(result.comparisons, ["method_a", "method_b", "task", "difference", "ci_low", "ci_high",
                                          "p_holm"]))
    ext = result.extremes(k=3)
    if len(ext):
        print("\nimages with the highest (best) and lowest (worst) fool rates:")
        print(_table(ext, ["task", "method", "which", "image_id", "n_judgments", "fool_rate"]))


def print_exclusions(result: Any) -> None:
    """How many raters each quality rule flagged, and the flagged raters."""
    counts = result.study.get("exclusions") or []
    if not counts:
        print("\nrater exclusion: none (every rater kept)")
        return
    n = len(result.raters)
    print(f"\nrater exclusion (rules fixed at `study create`), {n} rater(s):")
    for c in counts:
        print(f"  {c['rule']:<14} {c['n_raters']:>3} flagged ({c['n_only']} by this rule alone): {c['text']}")
    flagged = result.raters[result.raters["excluded"].astype(bool)]
    if len(flagged):
        print(_table(flagged, ["rater_id", "rater_label", "catch_accuracy", "median_rt_s", "side_streak",
                               "answer_streak", "excluded_by"]))


def print_extended(task: int, ext: Any) -> None:
    """One task's ranking, win matrix, metric agreement and reliability, each with its reading."""
    from studies.extended import metric_verdict

    readings = ext.readings()
    scale = "score 0 = chosen as often as the real image" if ext.ranking.reference else "duels only: mean score 0"
    print(f"\nBradley-Terry ranking, task {task} ({scale}):")
    print(_table(ext.ranking.scores, ["option", "rank", "score", "ci_low", "ci_high", "n_comparisons", "note"]))
    print(f"reading: {readings['ranking']}")
    print("\nwin matrix (share of trials the row was chosen over the column, wins/trials):")
    print(ext.ranking.win_table().to_string())
    print(f"reading: {readings['win_matrix']}")
    if ext.agreement is not None:
        print("\nmetric agreement with the raters (95% CI by bootstrap over raters and images):")
        print(_table(ext.agreement.table, ["metric", "better", "basis", "n_trials", "agreement", "ci_low",
                                           "ci_high", "spearman_rho", "n_methods"]))
        print(f"reading: {readings['agreement']}")
    print("\ninter-rater reliability:")
    print(_table(ext.reliability, ["measure", "value", "low", "high", "n_units"]))
    print(f"reading: {readings['reliability']}")
    print(f"\nverdict: {metric_verdict(ext)}")


def print_analysis(result: Any) -> None:
    """Everything `study analyze` prints, then the notes."""
    print_fool_rates(result)
    print_exclusions(result)
    for task, ext in sorted(result.extended.items()):
        print_extended(task, ext)
    for task, why in (result.study.get("extended_skipped") or {}).items():
        print(f"\nno ranking for task {task}: {why}")
    if result.study.get("power"):
        print(f"\npower: {result.study['power']}")
    print()
    notes = list(result.notes) + [n for ext in result.extended.values() for n in ext.notes]
    for note in dict.fromkeys(notes):
        print(f"note: {note}")


__all__ = ["print_analysis", "print_exclusions", "print_extended", "print_fool_rates"]
