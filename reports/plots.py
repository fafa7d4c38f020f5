"""Report plots: matplotlib figures as inline SVG, sized and styled to read on screen and in print."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from evalsuite.figures import COLORS, MARKERS, style, to_svg  # noqa: E402,F401  (the shared look)
from evalsuite.figures import RC as _RC  # noqa: E402

# Horizontal boxes: `orientation` since matplotlib 3.10, `vert` before (deprecated after).
_HORIZONTAL = (
    {"orientation": "horizontal"}
    if tuple(int(x) for x in matplotlib.__version__.split(".")[:2]) >= (3, 10)
    else {"vert": False}
)


# Per-image points drawn per method and metric: above this, a seeded sample of them (the boxes, means and
# intervals use every value), so a 50,000-image run's report stays a few hundred KB.
MAX_POINTS = 2000


def shown(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The points to draw: all of them, or MAX_POINTS of them drawn without replacement."""
    return values if len(values) <= MAX_POINTS else values[rng.choice(len(values), MAX_POINTS, replace=False)]


def metric_distributions(
    per_image: pd.DataFrame, methods: Sequence[str], columns: Sequence[str], titles: dict[str, str],
    summary: pd.DataFrame,
) -> str | None:
    """Per-image values of each metric per method: points (at most MAX_POINTS), box, and the mean with its 95% CI."""
    columns = [c for c in columns if c in per_image and per_image[c].notna().any()]
    if not columns or per_image.empty:
        return None
    ncol = min(3, len(columns))
    nrow = -(-len(columns) // ncol)
    height = 0.9 + 0.42 * len(methods)
    with matplotlib.rc_context(_RC):
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.1 * ncol, height * nrow), squeeze=False)
        rng = np.random.default_rng(0)
        for k, col in enumerate(columns):
            ax = axes[k // ncol][k % ncol]
            sampled = False  # some method has more points than are drawn
            for j, m in enumerate(methods):
                v = per_image.loc[per_image["method"] == m, col].dropna().to_numpy(dtype=float)
                sampled |= v.size > MAX_POINTS
                y = len(methods) - 1 - j
                color, marker = style(j)
                if v.size:
                    ax.boxplot(v, positions=[y], widths=0.5, showfliers=False, **_HORIZONTAL,
                               medianprops={"color": color}, boxprops={"color": "#888888"},
                               whiskerprops={"color": "#888888"}, capprops={"color": "#888888"})
                    pts = shown(v, rng)
                    jitter = rng.uniform(-0.17, 0.17, pts.size)
                    ax.scatter(pts, y + jitter, s=16, color=color, marker=marker, alpha=0.55, linewidths=0,
                               zorder=3)
                row = summary[summary["method"] == m]
                if len(row) and pd.notna(row.iloc[0].get(col)):
                    mean = float(row.iloc[0][col])
                    lo, hi = row.iloc[0].get(f"{col}_ci_low"), row.iloc[0].get(f"{col}_ci_high")
                    if pd.notna(lo) and pd.notna(hi):
                        ax.plot([lo, hi], [y + 0.36, y + 0.36], color="black", lw=1.4, zorder=4)
                    ax.plot([mean], [y + 0.36], marker="|", ms=9, mew=2, color="black", zorder=5)
            ax.set_yticks(range(len(methods)), list(reversed(methods)))
            ax.set_ylim(-0.6, len(methods) - 0.3)
            more = f" ({MAX_POINTS:,} points of each method drawn)" if sampled else ""
            ax.set_title(titles.get(col, col) + more, loc="left")
            ax.grid(axis="y", visible=False)
        for k in range(len(columns), nrow * ncol):
            axes[k // ncol][k % ncol].set_visible(False)
        fig.tight_layout()
        return to_svg(fig, "dist")


def psnr_vs_consistency(per_image: pd.DataFrame, methods: Sequence[str]) -> str | None:
    """Per-image PSNR against consistency, one colour and marker per method; method means are large marks."""
    cols = ("psnr", "consistency")
    if per_image.empty or any(c not in per_image or per_image[c].notna().sum() == 0 for c in cols):
        return None
    df = per_image.dropna(subset=list(cols))
    with matplotlib.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.2, 3.8))
        for j, m in enumerate(methods):
            d = df[df["method"] == m]
            if d.empty:
                continue
            color, marker = style(j)
            pts = d.iloc[shown(np.arange(len(d)), np.random.default_rng(j))]
            ax.scatter(pts["consistency"], pts["psnr"], s=28, color=color, marker=marker, alpha=0.5, linewidths=0)
            ax.scatter([d["consistency"].mean()], [d["psnr"].mean()], s=110, color=color, marker=marker,
                       edgecolors="black", linewidths=1.0, zorder=4, label=f"{m} (mean of {len(d)})")
        pos = df["consistency"][df["consistency"] > 0]
        if len(pos) and pos.max() / pos.min() > 30:
            ax.set_xscale("log")
        ax.set_xlabel("consistency: MSE(downsampled SR, LR) \u00d71e-5  \u2190 better")
        ax.set_ylabel("PSNR (dB)  better \u2192")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
        fig.tight_layout()
        return to_svg(fig, "scatter")


def fool_rates(table: pd.DataFrame) -> str | None:
    """Fool rates per method and task with their two-way cluster-robust 95% intervals (ci_low/high, the ones
    docs/studies.md says to quote); 50% marks a rate equal to the real image's."""
    if table is None or table.empty:
        return None
    rows = table.reset_index(drop=True)
    labels = [f"{r.method} ({r.task})" if "task" in rows and pd.notna(r.task) else str(r.method)
              for r in rows.itertuples()]
    with matplotlib.rc_context(_RC):
        fig, ax = plt.subplots(figsize=(6.2, 0.8 + 0.42 * len(rows)))
        for k, r in enumerate(rows.itertuples()):
            y = len(rows) - 1 - k
            color, marker = style(k)
            rate = 100 * float(r.fool_rate)
            lo, hi = getattr(r, "ci_low", np.nan), getattr(r, "ci_high", np.nan)
            if pd.notna(lo) and pd.notna(hi):
                ax.plot([100 * lo, 100 * hi], [y, y], color=color, lw=2.2, solid_capstyle="butt")
            ax.plot([rate], [y], marker=marker, color=color, ms=8, mec="black", mew=0.8)
            # Labels near an edge of the axis are anchored inside it, so they never cross the axis line.
            ha = "left" if rate < 12 else "right" if rate > 88 else "center"
            ax.annotate(f"{rate:.1f}%  (n={int(r.n_judgments)})", (rate, y), xytext=(0, 7),
                        textcoords="offset points", ha=ha, fontsize=8)
        ax.axvline(50, color="black", ls="--", lw=1)
        ax.text(50, len(rows) - 0.45, " 50% = chosen as often as real", fontsize=8, va="bottom")
        ax.set_yticks(range(len(rows)), list(reversed(labels)))
        ax.set_ylim(-0.7, len(rows) - 0.1)
        ax.set_xlim(0, 100)
        ax.set_xlabel("fool rate (%, bars: 95% CI, clustered by rater and image): model output chosen")
        ax.grid(axis="y", visible=False)
        fig.tight_layout()
        return to_svg(fig, "fool")
