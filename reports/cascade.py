"""The report of a cascade run: a grid of samples (base | stage 1 | stage 2 ...) and the metric table per level.

One self-contained HTML file (images embedded as data URIs, no script, no network), written next to the
run's summary.csv by `evalsuite run cascade`, or again with `write_cascade_report(RUN)`.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

from evalsuite.io import atomic_write_text

GRID_SAMPLES = 8  # samples shown in the grid
CELL_PX = 160  # displayed side of every image (low levels are enlarged with nearest-neighbour)

CSS = f"""
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
table.metrics {{ border-collapse: collapse; margin: 12px 0 24px; }}
table.metrics th, table.metrics td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
table.metrics td.text, table.metrics th.text {{ text-align: left; }}
table.grid td {{ padding: 2px; text-align: center; font-size: 12px; }}
table.grid img {{ width: {CELL_PX}px; height: {CELL_PX}px; image-rendering: pixelated; display: block; }}
p.note {{ color: #555; font-size: 13px; max-width: 1100px; }}
"""


def _fmt(v: object) -> str:
    """A table cell: numbers to 4 significant digits, NaN as an em dash."""
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.4g}"
    return html.escape(str(v))


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def cascade_report_html(run: Path) -> str:
    """The report's HTML for a cascade run folder (summary.csv, cascade.json, levels/)."""
    meta = json.loads((run / "cascade.json").read_text())
    summary = pd.read_csv(run / "summary.csv")
    levels = meta["levels"]
    spec = meta["spec"]
    cols = [c for c in summary.columns if c != "notes"]
    head = "".join(f'<th class="{"text" if c in ("level", "source", "resolution") else ""}">{html.escape(c)}</th>'
                   for c in cols)
    body = []
    for _, r in summary.iterrows():
        cells = "".join(
            f'<td class="{"text" if c in ("level", "source", "resolution") else ""}">{_fmt(r[c])}</td>' for c in cols
        )
        body.append(f"<tr>{cells}</tr>")
    notes = "".join(
        f'<p class="note"><b>{html.escape(str(r["level"]))}</b>: {html.escape(str(r["notes"]))}</p>'
        for _, r in summary.iterrows()
        if isinstance(r["notes"], str) and r["notes"]
    )
    # The grid: one row per sample, one column per level (same displayed size, so the refinement shows).
    ids = sorted(p.stem for p in (run / levels[0]["folder"]).glob("*.png"))[:GRID_SAMPLES]
    grid_head = "".join(
        f"<th>{html.escape(lv['name'])}<br>{lv['size'][0]}x{lv['size'][1]}</th>" for lv in levels
    )
    grid_rows = []
    for i in ids:
        cells = "".join(
            f'<td><img src="{_data_uri(run / lv["folder"] / f"{i}.png")}" alt="{html.escape(lv["name"])} {i}"></td>'
            for lv in levels
        )
        grid_rows.append(f"<tr><td>{html.escape(i)}</td>{cells}</tr>")
    stages = " → ".join(html.escape(lv["source"]) for lv in levels)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Cascade {html.escape(run.name)}</title>
<style>{CSS}</style></head><body>
<h1>Cascaded generation: {html.escape(run.name)}</h1>
<p>{stages}; {int(summary["n_images"].iloc[0])} samples, seed {spec["seed"]}, steps {spec["steps"] or "checkpoint"}.</p>
<h2>Metrics per level</h2>
<table class="metrics" id="cascade-metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>
<p class="note">FID/KID/IS of each level's images against the reference brought to that level's resolution;
consistency: MSE between the degraded stage output and that stage's own input (x1e5, SR3's). No ground truth
exists for generated images, so no full-reference metric (PSNR, SSIM, LPIPS) applies.</p>
{notes}
<h2>Samples</h2>
<table class="grid" id="cascade-grid"><thead><tr><th>sample</th>{grid_head}</tr></thead>
<tbody>{"".join(grid_rows)}</tbody></table>
</body></html>
"""


def write_cascade_report(run: str | Path, out: str | Path | None = None) -> Path:
    """Write RUN/report.html (or `out`) for a cascade run folder; returns its path."""
    run = Path(run)
    path = Path(out) if out else run / "report.html"
    atomic_write_text(path, cascade_report_html(run))
    return path
