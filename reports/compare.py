"""`evalsuite compare RUN_A RUN_B`: the console table, compare.csv, compare_images.csv and compare.html.

The statistics are `evalsuite.compare`; this module writes them and a small gallery of the image pairs
that changed most (HR, A's output, B's output, cropped around where A and B differ most).
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from evalsuite.comparable import NotComparableError
from evalsuite.compare import Comparison, compare_runs
from evalsuite.io import atomic_write_text
from evalsuite.results import fmt_number
from reports import images as I


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `compare` sub-command to the evalsuite parser."""
    p = sub.add_parser("compare", help="compare two runs image by image (paired differences, CIs, p-values)")
    p.add_argument("run_a", metavar="RUN_A", help="the baseline run folder (differences are B - A)")
    p.add_argument("run_b", metavar="RUN_B", help="the run compared with it")
    p.add_argument("--method", help="NAME (in both runs) or NAME_A,NAME_B (default: every method both runs have)")
    p.add_argument("--metrics", help="comma-separated per-image metric columns (default: all both runs have)")
    p.add_argument("--out", help="folder for compare.csv, compare_images.csv and compare.html")
    p.add_argument("--gallery", type=int, default=6, help="image pairs in the HTML gallery (default 6)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and of Monte Carlo sign flips")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    metrics = tuple(x.strip() for x in (args.metrics or "").split(",") if x.strip())
    try:
        comps = compare_runs(args.run_a, args.run_b, args.method, metrics, seed=args.seed)
    except NotComparableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    for c in comps:
        print(console_table(c))
        print()
    if args.out:
        for path in write_comparison(comps, args.out, n_gallery=args.gallery):
            print(f"wrote {path.resolve()}")
    return 0


def console_table(c: Comparison) -> str:
    """The per-metric table of one method pair, as text."""
    head = f"{c.method_b} ({c.b.run_dir}) - {c.method_a} ({c.a.run_dir}), {len(c.per_image)} image pairs"
    rows = []
    for m in c.metrics:
        rows.append({
            "metric": m.metric, "n": m.n, "A": fmt_number(m.mean_a), "B": fmt_number(m.mean_b),
            "B - A [95% CI]": f"{m.diff:+.4g} [{m.ci_low:+.4g}, {m.ci_high:+.4g}]",
            "p": f"{m.p:.3g}", "p (Holm)": f"{m.p_holm:.3g}", "verdict": m.verdict,
        })
    body = pd.DataFrame(rows).to_string(index=False) if rows else "(no per-image metric both runs have)"
    notes = "".join(f"\nnote: {n}" for n in c.notes)
    return f"{head}\n{body}{notes}"


def _crop_uris(c: Comparison, row: pd.Series) -> list[tuple[str, str]]:
    """(caption, data URI) for HR, A and B of one image pair, cropped where A and B differ most."""
    pa = c.a.run_dir / "outputs" / c.method_a / f"{row['image_id_a']}.png"
    pb = c.b.run_dir / "outputs" / c.method_b / f"{row['image_id_b']}.png"
    hr = c.a.run_dir / "hr" / f"{row['image_id_a']}.png"
    paths = [("HR", hr), (f"A: {c.method_a}", pa), (f"B: {c.method_b}", pb)]
    if not (pa.exists() and pb.exists() and hr.exists()):
        return [(cap, "") for cap, _ in paths]
    arrays = [I.load_array(p) for _, p in paths]
    if len({a.shape for a in arrays}) != 1:
        return [(cap, I.thumbnail_uri(p, 256)) for cap, p in paths]
    detail = I.find_detail(arrays[1], [arrays[2]], 48)  # where B differs most from A
    h, w = arrays[0].shape[:2]
    box = I.crop_box(w, h, detail, 192, 1)
    return [(cap, I.png_uri(I.crop_image(a, box))) for (cap, _), a in zip(paths, arrays)]


def render_html(comps: list[Comparison], n_gallery: int = 6) -> str:
    """One self-contained HTML page: per-metric tables and the most-changed image pairs of each method pair."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>evalsuite compare</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#f3f3f3}"
        "td:first-child{text-align:left}.better{color:#070}.worse{color:#b00}figure{display:inline-block;margin:.3em}"
        "figure img{image-rendering:pixelated;width:192px}figcaption{font-size:.85em}.pair{margin:1em 0}"
        "</style></head><body><h1>Runs compared</h1>"
    ]
    for c in comps:
        parts.append(
            f"<h2>{e(c.method_b)} (B: {e(str(c.b.run_dir))}) vs {e(c.method_a)} (A: {e(str(c.a.run_dir))})</h2>"
            f"<p>{len(c.per_image)} images both runs scored, matched by the content hash of the HR source; "
            "differences are B - A, 95% bootstrap-t CI over image pairs, two-sided sign-flip p-value, "
            "Holm-adjusted over the metrics.</p>"
        )
        parts.append("<table><tr><th>metric</th><th>n</th><th>A</th><th>B</th><th>B - A</th><th>95% CI</th>"
                     "<th>p</th><th>p (Holm)</th><th>verdict</th></tr>")
        for m in c.metrics:
            cls = {"B better": "better", "B worse": "worse"}.get(m.verdict, "")
            parts.append(
                f"<tr><td>{e(m.metric)}</td><td>{m.n}</td><td>{fmt_number(m.mean_a)}</td>"
                f"<td>{fmt_number(m.mean_b)}</td><td>{m.diff:+.4g}</td><td>[{m.ci_low:+.4g}, {m.ci_high:+.4g}]</td>"
                f"<td>{m.p:.3g}</td><td>{m.p_holm:.3g}</td><td class='{cls}'>{e(m.verdict)}</td></tr>"
            )
        parts.append("</table>")
        parts += [f"<p>Note: {e(n)}</p>" for n in c.notes]
        metric = c.sort_metric
        top = c.most_changed(metric, n_gallery)
        if len(top) and metric:
            parts.append(f"<h3>The {len(top)} images whose {e(metric)} changed most</h3>")
            for _, row in top.iterrows():
                name = row["image_id_a"] if row["image_id_a"] == row["image_id_b"] else (
                    f"{row['image_id_a']} (A) = {row['image_id_b']} (B)")
                values = ", ".join(
                    f"{m.metric} {row[f'{m.metric}_a']:.4g} &rarr; {row[f'{m.metric}_b']:.4g}"
                    for m in c.metrics if not np.isnan(row[f"{m.metric}_diff"])
                )
                figs = "".join(
                    f"<figure><img src='{uri}' alt='{e(cap)}'><figcaption>{e(cap)}</figcaption></figure>"
                    if uri else f"<figure><figcaption>{e(cap)}: image file missing</figcaption></figure>"
                    for cap, uri in _crop_uris(c, row)
                )
                parts.append(f"<div class='pair'><b>{e(str(name))}</b>: {values}<br>{figs}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_comparison(comps: list[Comparison], out: str | Path, n_gallery: int = 6) -> list[Path]:
    """Write compare.csv (per metric), compare_images.csv (per image pair) and compare.html into `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.concat([c.table() for c in comps], ignore_index=True)
    per_image = pd.concat(
        [c.per_image.assign(method_a=c.method_a, method_b=c.method_b) for c in comps], ignore_index=True
    )
    paths = [out / "compare.csv", out / "compare_images.csv", out / "compare.html"]
    atomic_write_text(paths[0], table.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(paths[1], per_image.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(paths[2], render_html(comps, n_gallery))
    return paths
