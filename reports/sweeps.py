"""Sweep plots (each metric against the swept value) and the perception-distortion plane of a run.

A run that swept a setting (`sr3:CKPT@steps=10,25,50`, `@sampler=ddim,ancestral`, a checkpoint glob)
records its methods' swept values in `sweeps.json` (evalsuite/sweep.py); every metric's mean with its 95%
CI is plotted against that value, one panel per metric. The perception-distortion plane (Blau and
Michaeli, CVPR 2018) puts each method's mean distortion (PSNR, else SSIM) against a perceptual or
no-reference metric (LPIPS, DISTS, NIQE, FID, ...), both with their CIs, the better corner marked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from evalsuite.metrics.base import column_info, column_metric, metric_info
from evalsuite.results import REFERENCE_ROW, metric_columns
from evalsuite.sweep import CHECKPOINT_KEY, read_sweeps
from reports.plots import _RC, style, to_svg

DISTORTION = ("psnr", "ssim", "ms_ssim")
PERCEPTUAL = ("lpips", "dists", "niqe", "fid", "kid", "is")


def _row(summary: pd.DataFrame, label: str) -> pd.Series | None:
    hit = summary[summary["method"].astype(str) == label]
    return hit.iloc[0] if len(hit) else None


def sweep_groups(run_dir: str | Path, summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The run's sweeps: [{sweep, key, points: [(value, label)]}] with two or more points, in sweep order."""
    groups: dict[str, dict[str, Any]] = {}
    for label, v in read_sweeps(run_dir).items():
        if _row(summary, label) is None:
            continue
        g = groups.setdefault(v["sweep"], {"sweep": v["sweep"], "key": v["key"], "points": []})
        g["points"].append((v["value"], label))
    return [g for g in groups.values() if len(g["points"]) >= 2]


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def sweep_plot(group: dict[str, Any], summary: pd.DataFrame, columns: Sequence[str], salt: str = "") -> str | None:
    """One sweep: each metric's mean (95% CI bars) against the swept value, one panel per metric."""
    points = group["points"]
    values = [v for v, _ in points]
    numeric = _numeric(values)
    if numeric:
        points = sorted(points, key=lambda p: p[0])
        values = [v for v, _ in points]
    cols = [c for c in columns if any(pd.notna(_row(summary, lab)[c]) for _, lab in points)]
    if not cols:
        return None
    import matplotlib.pyplot as plt

    ncol = min(3, len(cols))
    nrow = -(-len(cols) // ncol)
    xs = np.asarray(values, dtype=float) if numeric else np.arange(len(values))
    key = "training step (checkpoint)" if group["key"] == CHECKPOINT_KEY else group["key"]
    with matplotlib.rc_context(_RC):
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 2.6 * nrow), squeeze=False)
        for k, c in enumerate(cols):
            ax = axes[k // ncol][k % ncol]
            rows = [_row(summary, lab) for _, lab in points]
            mean = np.array([float(r[c]) for r in rows])
            lo = np.array([float(r.get(f"{c}_ci_low", np.nan)) for r in rows])
            hi = np.array([float(r.get(f"{c}_ci_high", np.nan)) for r in rows])
            err = np.vstack([np.where(np.isnan(lo), 0, mean - lo), np.where(np.isnan(hi), 0, hi - mean)])
            color, marker = style(0)
            ax.errorbar(xs, mean, yerr=err, color=color, marker=marker, ms=5, capsize=3, lw=1.4)
            info = column_info(c)
            ax.set_title(f"{info.short} {info.arrow}".strip(), loc="left")
            ax.set_xlabel(key)
            if numeric and min(values) > 0 and max(values) / min(values) >= 20:
                ax.set_xscale("log")
            if not numeric:
                ax.set_xticks(xs, [str(v) for v in values])
            elif len(values) <= 8:
                ax.set_xticks(xs, [f"{v:g}" for v in values])
                ax.minorticks_off()
        for k in range(len(cols), nrow * ncol):
            axes[k // ncol][k % ncol].set_visible(False)
        fig.tight_layout()
        return to_svg(fig, f"sweep-{salt}-{group['sweep']}")


def pd_columns(columns: Sequence[str], summary: pd.DataFrame) -> tuple[str, str] | None:
    """(distortion column, perceptual column) with values for two or more methods, or None."""
    methods = summary[summary["method"].astype(str) != REFERENCE_ROW]

    def usable(c: str) -> bool:
        return c in methods and methods[c].notna().sum() >= 2 and column_info(c).higher_is_better is not None

    dist = next((c for c in DISTORTION if usable(c)), None)
    perc = next((c for c in PERCEPTUAL if usable(c)), None)
    if perc is None:
        # Any other no-reference or perceptual column with a direction (pyiqa:musiq, ...).
        for c in columns:
            if c in DISTORTION or not usable(c) or c in ("consistency", "detail", "detail_fidelity"):
                continue
            try:
                info = metric_info(column_metric(c))
            except (KeyError, ValueError):
                info = None
            if c.startswith("pyiqa:") or (info is not None and not info.full_reference):
                perc = c
                break
    return (dist, perc) if dist and perc else None


def perception_distortion(
    summary: pd.DataFrame, columns: Sequence[str], sweeps: list[dict[str, Any]], salt: str = ""
) -> str | None:
    """Method means on the perception-distortion plane (95% CI bars both ways); sweeps joined in order."""
    pair = pd_columns(columns, summary)
    if pair is None:
        return None
    dist, perc = pair
    import matplotlib.pyplot as plt

    d = summary[(summary["method"].astype(str) != REFERENCE_ROW) & summary[dist].notna() & summary[perc].notna()]
    di, pi = column_info(dist), column_info(perc)
    with matplotlib.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.2, 3.9))
        for j, (_, r) in enumerate(d.iterrows()):
            color, marker = style(j)
            x, y = float(r[perc]), float(r[dist])
            xerr = [[x - r.get(f"{perc}_ci_low", x)], [r.get(f"{perc}_ci_high", x) - x]]
            yerr = [[y - r.get(f"{dist}_ci_low", y)], [r.get(f"{dist}_ci_high", y) - y]]
            xerr = np.nan_to_num(np.asarray(xerr, dtype=float))
            yerr = np.nan_to_num(np.asarray(yerr, dtype=float))
            ax.errorbar([x], [y], xerr=xerr, yerr=yerr, color=color, marker=marker, ms=8, mec="black", mew=0.8,
                        capsize=2, lw=1, label=str(r["method"]))
        for g in sweeps:
            pts = sorted(g["points"], key=lambda p: p[0]) if _numeric([v for v, _ in g["points"]]) else g["points"]
            rows = [_row(d, lab) for _, lab in pts]
            rows = [r for r in rows if r is not None]
            if len(rows) >= 2:
                ax.plot([float(r[perc]) for r in rows], [float(r[dist]) for r in rows], color="#888888", lw=1,
                        ls="--", zorder=0)
        ax.set_xlabel(f"{pi.short} {pi.arrow} (perception)")
        ax.set_ylabel(f"{di.short} {di.arrow} (distortion)")
        if pi.higher_is_better is False:
            ax.invert_xaxis()  # the better corner is always top right
        if di.higher_is_better is False:
            ax.invert_yaxis()
        ax.annotate("better \u2197", xy=(0.97, 0.95), xycoords="axes fraction", ha="right", va="top", fontsize=8,
                    color="#555555")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
        fig.tight_layout()
        return to_svg(fig, f"pd-{salt}")


def sweeps_context(run_dir: Path, summary: pd.DataFrame) -> dict[str, Any]:
    """The report's sweep plots and perception-distortion plane (the template's `sweeps` section)."""
    cols = metric_columns(summary)
    groups = sweep_groups(run_dir, summary)
    plots = []
    for g in groups:
        svg = sweep_plot(g, summary, cols, Path(run_dir).name)
        if svg:
            key = "training step" if g["key"] == CHECKPOINT_KEY else g["key"]
            plots.append({"sweep": g["sweep"], "key": key, "svg": svg, "n": len(g["points"])})
    pair = pd_columns(cols, summary)
    return {
        "plots": plots,
        "pd": perception_distortion(summary, cols, groups, Path(run_dir).name),
        "pd_columns": [column_info(c).short for c in pair] if pair else [],
    }
