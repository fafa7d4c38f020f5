"""The look of every figure the project draws (reports and study analyses): colours, markers, rc, inline SVG."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Okabe-Ito colours (distinguishable with colour-vision deficiency) and distinct markers for grey print.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")

# matplotlib rc for every figure: small type, light grid, text kept as SVG text.
RC = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "svg.fonttype": "none",  # text stays text: sharp, searchable, small
    "figure.dpi": 100,
}


def style(i: int) -> tuple[str, str]:
    """Colour and marker of the i-th method."""
    return COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)]


def to_svg(fig: plt.Figure, salt: str) -> str:
    """A figure as an inline <svg> element (no XML prolog), with ids made unique by `salt`."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]
