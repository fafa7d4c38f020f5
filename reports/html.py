"""The HTML report of a run folder (and, optionally, of a human study): one self-contained file.

`write_report(run_dir)` reads the files the runner wrote (manifest.json, spec.yaml, summary.csv,
per_image.csv, errors.csv, failures.csv, hr/, lr/, outputs/) and renders reports/templates/report.html.j2.
CSS, JavaScript, plots (inline SVG) and images (data URIs) are all inside the file, so it opens from disk
with no server and no network, and can be forwarded as it is.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd
import yaml
from PIL import Image

from evalsuite.datasets import BUILTIN
from evalsuite.io import atomic_write_text
from evalsuite.lr_source import hr_absent
from evalsuite.metrics.base import column_info, column_metric
from evalsuite.numbers import finite
from evalsuite.results import REFERENCE_ROW, Results, fmt_number, metric_columns, nonstandard_metrics, paired_lead
from reports import images as I
from reports import plots
from reports.paper import paper_table
from reports.samples import samples_section
from reports.study import load_study
from reports.study_section import study_section
from reports.sweeps import sweeps_context

TEMPLATES = Path(__file__).parent / "templates"

PRIMARY_ORDER = ("psnr", "ssim", "lpips", "consistency")
MAX_HASH_ROWS = 500  # input hashes listed in the report; manifest.json holds every one


def _higher(col: str | None) -> bool:
    """Whether higher is better for a column (True when the column has no direction or there is none)."""
    hib = column_info(col).higher_is_better if col else None
    return True if hib is None else hib


@dataclass(frozen=True)
class ReportOptions:
    """What goes into the report: gallery size, worst images per method, image size cap, zoom factor."""

    n_gallery: int = 6
    n_worst: int = 3
    max_side: int = 512  # gallery images above this side are cropped around their detail
    zoom: int = 4  # the detail box is 1/zoom of the image's short side


def fmt(value: Any) -> str:
    """A metric value for display (as on the console), an em dash when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2014"
    return fmt_number(float(value))


def fmt_seconds(s: float | None) -> str:
    """Seconds as a short human duration."""
    if s is None:
        return "unknown"
    if s < 1:
        return f"{s * 1000:.1f} ms"
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def slug(text: str) -> str:
    """An HTML id made from any text."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-") or "x"


def _methods(res: Results) -> list[str]:
    """The run's methods: the summary's rows without the HR reference row (it has no outputs, no time, no failures)."""
    return [m for m in res.summary["method"].astype(str) if m != REFERENCE_ROW]


def _n_images(run_dir: Path, manifest: dict, res: Results) -> int:
    """Images in the run: from the manifest, else the scored ids, else the prepared HR files."""
    if "n_images" in manifest:
        return int(manifest["n_images"])
    return int(res.per_image["image_id"].nunique()) or len(list((run_dir / "hr").glob("*.png")))


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _read_yaml(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


# ---------------------------------------------------------------------------------------------------------
# Sections


def hub_setting(hub: dict[str, Any]) -> str:
    """An `hf:` record of the manifest in one line: repository[/file] @ commit, and the file's sha256."""
    where = hub.get("repo", "?") + (f"/{hub['file']}" if hub.get("file") else "")
    commit = str(hub.get("commit") or hub.get("revision") or "?")[:12]
    sha = f"sha256 {hub['sha256'][:16]}" if hub.get("sha256") else f"{len(hub.get('files_sha256') or {})} files hashed"
    return f"{where} @ {commit} ({sha})"


def _run_facts(run_dir: Path, manifest: dict, spec: dict, res: Results) -> dict[str, Any]:
    """Section 1: what was run."""
    task = manifest.get("task") or {}
    sizes = ""
    if task.get("lr_size"):
        sizes = f"{task['lr_size']}\u00d7{task['lr_size']} \u2192 {task['hr_size']}\u00d7{task['hr_size']}"
    facts = [
        (
            "Task",
            f"{task.get('name', spec.get('task') or '?')} (\u00d7{task.get('scale', '?')}"
            + (f", {sizes})" if sizes else ", HR images keep their size)"),
        ),
        (
            "Data",
            manifest.get("data", spec.get("data", "unknown"))
            + (" (scikit-image's bundled public-domain photos)" if spec.get("data") == BUILTIN else ""),
        ),
        ("Images", f"{_n_images(run_dir, manifest, res)} used, {manifest.get('n_skipped', len(res.errors))} skipped"),
        ("Metrics", ", ".join(manifest.get("metrics", {}) or spec.get("metrics", [])) or "none"),
        (
            "Device",
            f"{manifest.get('device', 'unknown')}"
            + (f", {manifest['world_size']} processes" if manifest.get("world_size", 1) > 1 else ""),
        ),
        ("Time taken", f"{fmt_seconds(manifest.get('seconds'))} (started {manifest.get('started', '?')})"),
        ("Command", manifest.get("command", "")),
        ("Seed / bootstrap", f"seed {spec.get('seed', '?')}, {spec.get('bootstrap', '?')} resamples"),
        ("Spec hash", manifest.get("spec_hash", "")),
    ]
    conventions = list((manifest.get("conventions") or {}).items())
    methods = []
    info = manifest.get("methods") or {}
    for label in _methods(res):
        m = dict(info.get(label) or {})
        spi = m.pop("seconds_per_image", None)
        spec_name = m.pop("spec", label)
        if isinstance(m.get("hf"), dict):
            m["hf"] = hub_setting(m["hf"])  # one line, not every file's hash (those stay in manifest.json)
        settings = ", ".join(f"{k}: {v}" for k, v in m.items()) or "defaults (no checkpoint)"
        methods.append(
            {
                "label": label,
                "spec": spec_name,
                "settings": settings,
                "seconds": fmt_seconds(spi) if spi is not None else "cached outputs (not timed)",
            }
        )
    versions = ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items())
    hashes = sorted((manifest.get("inputs") or {}).items())
    return {
        "facts": [(k, str(v)) for k, v in facts if v not in ("", None)],
        "conventions": conventions,
        "methods": methods,
        "versions": versions,
        "hashes": hashes[:MAX_HASH_ROWS],
        "n_hashes": len(hashes),
        "errors": res.errors.fillna("").to_dict("records"),
        "failures": res.failures.fillna("").to_dict("records"),
        "manifest_missing": not manifest,
    }


def _metric_table(res: Results, manifest: dict, cols: list[str]) -> dict[str, Any]:
    """Section 2: the metric table, best per column marked, with the reason for every missing value."""
    summary = res.summary
    metric_notes = manifest.get("metric_notes") or {}
    # Metrics computed with non-standard weights: a banner over the table and a mark on their columns.
    nonstandard = manifest.get("nonstandard_weights") if manifest else None
    if nonstandard is None:
        nonstandard = nonstandard_metrics(res.run_dir)
    is_method = summary["method"].astype(str) != REFERENCE_ROW
    n_methods = int(is_method.sum())
    headers, missing = [], []
    for c in cols:
        hib = column_info(c).higher_is_better
        values = [(finite(v)) for v in summary[c]]
        present = [v for v in values if v is not None]
        # The best method: the HR reference row is shown for comparison, never marked best.
        ranked = [v for v, m in zip(values, is_method, strict=True) if v is not None and m]
        best = None
        if hib is not None and len(ranked) >= 2:
            best = max(ranked) if hib else min(ranked)
        info = column_info(c)
        headers.append(
            {
                "col": c,
                "title": info.title,
                "arrow": info.arrow,
                "direction": info.direction,
                "help": info.help,
                "best": best,
                "nonstandard": nonstandard.get(column_metric(c), ""),
            }
        )
        if not present:
            reason = metric_notes.get(column_metric(c)) or "no value was computed (see the notes column)"
            missing.append({"col": c, "title": column_info(c).title, "reason": reason})
    rows = []
    for _, r in summary.iterrows():
        cells = []
        for h in headers:
            c = h["col"]
            v, lo, hi = finite(r.get(c)), finite(r.get(f"{c}_ci_low")), finite(r.get(f"{c}_ci_high"))
            ci = f"[{fmt(lo)}, {fmt(hi)}]" if lo is not None and hi is not None and lo != hi else ""
            cells.append(
                {
                    "col": c,
                    "value": v,
                    "text": fmt(v),
                    "ci": ci,
                    "lo": lo,
                    "hi": hi,
                    "best": v is not None and h["best"] is not None and v == h["best"]
                    and str(r["method"]) != REFERENCE_ROW,
                }
            )
        notes = str(r.get("notes")) if pd.notna(r.get("notes")) else ""
        # A metric note that applies to every method is explained once, under the table.
        for note_metric, msg in metric_notes.items():
            notes = notes.replace(f"{note_metric}: {msg}", "").strip("; ")
        rows.append(
            {
                "method": str(r["method"]),
                "n": int(r["n_images"]) if pd.notna(r["n_images"]) else 0,
                "cells": cells,
                "notes": notes,
            }
        )
    common = _common_notes(rows)
    return {
        "headers": headers,
        "rows": rows,
        "missing": missing,
        "n_methods": n_methods,
        "has_notes": any(r["notes"] for r in rows),
        "common_notes": common,
        "nonstandard": [
            {"metric": n, "titles": ", ".join(titles), "note": note}
            for n, note in nonstandard.items()
            if (titles := [h["title"] for h in headers if column_metric(h["col"]) == n])
        ],
    }


def _common_notes(rows: list[dict[str, Any]]) -> list[str]:
    """The notes every row of a table of two or more carries (run-wide ones), taken out of the rows, in order."""
    parts = [[p for p in r["notes"].split("; ") if p] for r in rows]
    if len(rows) < 2 or not parts[0]:
        return []
    common = [p for p in parts[0] if all(p in other for other in parts[1:])]
    for r, own in zip(rows, parts):
        r["notes"] = "; ".join(p for p in own if p not in common)
    return ["; ".join(common)] if common else []


def _headline(res: Results, cols: list[str], seed: int) -> list[str]:
    """Plain-language findings: the best method per metric and whether its lead holds image by image."""
    out = []
    summary, per = res.summary, res.per_image
    for c in cols:
        hib = column_info(c).higher_is_better
        d = summary[["method", c]].dropna()
        ref = d[d["method"].astype(str) == REFERENCE_ROW]
        d = d[d["method"].astype(str) != REFERENCE_ROW]
        if hib is None or len(d) < 2:
            continue
        d = d.sort_values(c, ascending=not hib, kind="stable")
        best, second = d.iloc[0], d.iloc[1]
        name, arrow = column_info(c).short, column_info(c).arrow
        text = (
            f"<b>{name} {arrow}</b> best: <b>{_esc(best['method'])}</b> {fmt(best[c])}, "
            f"then {_esc(second['method'])} {fmt(second[c])}"
        )
        # Paired comparison on the images both methods have: the lead, image by image.
        lead = paired_lead(per, best["method"], second["method"], c, hib, seed) if c in per else None
        if lead is not None:
            verdict = "a clear lead" if lead.clear else "not a clear lead (the interval includes 0)"
            text += (
                f" \u2014 ahead on {lead.wins} of {lead.n} images, by {fmt(lead.mean)} on average "
                f"(paired 95% CI {fmt(lead.ci_low)} to {fmt(lead.ci_high)}): {verdict}."
            )
        if len(ref):
            text += f" The HR images themselves: {fmt(ref.iloc[0][c])}."
        out.append(text)
    return out


def _esc(text: Any) -> str:
    return str(jinja2.utils.markupsafe.escape(str(text)))


def _paper(manifest: dict, cols: list[str]) -> dict[str, Any] | None:
    """The SR3 paper's table for the run's task, if the paper has one."""
    table = paper_table((manifest.get("task") or {}).get("name"))
    if table is None:
        return None
    headers = [
        {
            "col": c,
            "title": column_info(c).short,
            "arrow": column_info(c).arrow,
            "in_run": c in cols,
        }
        for c in table.columns
    ]

    def paper_fmt(v: float | None) -> str:
        # The paper's own precision, as printed.
        return "\u2014" if v is None else f"{v:g}"

    rows = [
        {"method": name, "cells": [paper_fmt(table.value(name, c)) for c in table.columns]} for name, _ in table.rows
    ]
    return {
        "title": table.title,
        "data": table.data,
        "source": table.source,
        "headers": headers,
        "rows": rows,
        "human": table.human,
    }


def _primary(cols: list[str], per_image: pd.DataFrame) -> str | None:
    """The metric that ranks images (worst images, gallery): PSNR when present."""
    usable = [
        c for c in cols if c in per_image and per_image[c].notna().any() and column_info(c).higher_is_better is not None
    ]
    for c in PRIMARY_ORDER:
        if c in usable:
            return c
    return usable[0] if usable else None


def _image_values(per: pd.DataFrame, cols: list[str], method: str, image_id: str) -> list[dict[str, str]]:
    row = per[(per["method"] == method) & (per["image_id"].astype(str) == image_id)]
    if row.empty:
        return []
    values = {c: finite(row.iloc[0][c]) for c in cols if c in per}
    return [
        {"col": c, "title": column_info(c).short, "value": v, "text": fmt(v), "best": False}
        for c, v in values.items()
        if v is not None
    ]


def _failure_reason(res: Results, method: str, image_id: str) -> str:
    f = res.failures
    hit = f[(f["method"].astype(str) == method) & (f["image_id"].astype(str) == image_id)]
    return str(hit.iloc[0]["reason"]) if len(hit) else "no output file for this image"


def _panel_uri(path: Path, region: tuple[int, int, int, int], whole: bool, s: int = 1) -> str:
    """A gallery image: the PNG file itself when uncropped (the pixels that were scored), else its crop."""
    return I.file_uri(path) if whole else I.png_uri(I.crop_image(I.load_array(path), region, s))


def _mark_best(panels: list[dict[str, Any]], cols: list[str]) -> None:
    """Mark the best value per metric among the methods' panels of one image."""
    for c in cols:
        hib = column_info(c).higher_is_better
        vals = [v for p in panels for v in p["values"] if v["col"] == c]
        nums = [v["value"] for v in vals]
        if hib is None or len(nums) < 2:
            continue
        best = max(nums) if hib else min(nums)
        for v in vals:
            v["best"] = v["value"] == best


def _panels(
    run_dir: Path, res: Results, cols: list[str], image_id: str, hr_shape: tuple, view: dict[str, Any]
) -> list[dict[str, Any]]:
    """LR | each method (or why it failed) | HR panels of one image, cut to the view's region."""
    region, whole, scale = view["region"], view["whole"], view["scale"]
    lr_path, hr_path = run_dir / "lr" / f"{image_id}.png", run_dir / "hr" / f"{image_id}.png"
    panels = []
    if lr_path.exists():
        uri = _panel_uri(lr_path, region, whole, scale)
        panels.append({"kind": "lr", "title": f"LR input (\u00f7{scale})", "uri": uri, "values": []})
    for m, out in view["outs"].items():
        if out is not None and out[1].shape == hr_shape:
            values = _image_values(res.per_image, cols, m, image_id)
            panels.append({"kind": "method", "title": m, "uri": _panel_uri(out[0], region, whole), "values": values})
        else:
            reason = _failure_reason(res, m, image_id)
            panels.append({"kind": "failed", "title": m, "uri": None, "reason": reason, "values": []})
    if not hr_absent(run_dir):  # --lr-source runs: the HR files are placeholders, never shown
        panels.append({"kind": "hr", "title": "HR reference", "uri": _panel_uri(hr_path, region, whole), "values": []})
    _mark_best(panels, cols)
    return panels


def _figure(
    run_dir: Path, res: Results, cols: list[str], image_id: str, why: str, scale: int, opts: ReportOptions
) -> dict[str, Any] | None:
    """One gallery figure: the detail to zoom on, the crop around it, and the panels."""
    hr_path, lr_path = run_dir / "hr" / f"{image_id}.png", run_dir / "lr" / f"{image_id}.png"
    if not hr_path.exists():
        return None
    hr = I.load_array(hr_path)
    h, w = hr.shape[:2]
    if scale == 0 and lr_path.exists():
        # No manifest: the scale is the HR/LR size ratio.
        with Image.open(lr_path) as lr_im:
            scale = max(1, round(w / lr_im.width))
    scale = scale or 1
    methods = _methods(res)
    paths = {m: run_dir / "outputs" / m / f"{image_id}.png" for m in methods}
    outs = {m: (p, I.load_array(p)) if p.exists() else None for m, p in paths.items()}
    size = max(8, min(h, w, opts.max_side) // opts.zoom)
    detail = I.find_detail(hr, [o[1] for o in outs.values() if o is not None and o[1].shape == hr.shape], size)
    # Large images: a crop around the detail keeps the file small; the detail stays inside.
    left, top, right, bottom = I.crop_box(w, h, detail, opts.max_side, scale)
    cw, ch = right - left, bottom - top
    box = {"x": (detail.x - left) / cw, "y": (detail.y - top) / ch, "w": detail.size / cw, "h": detail.size / ch}
    region = (left, top, right, bottom)
    view = {"region": region, "whole": region == (0, 0, w, h), "scale": scale, "outs": outs}
    return {
        "id": image_id,
        "anchor": f"img-{slug(image_id)}",
        "why": why,
        "panels": _panels(run_dir, res, cols, image_id, hr.shape, view),
        "w": cw,
        "h": ch,
        "box": box,
        "size": detail.size,
        "full": (w, h),
        "cropped": not view["whole"],
        "crop": (left, top),
    }


def _gallery(
    run_dir: Path, res: Results, manifest: dict, cols: list[str], primary: str | None, opts: ReportOptions
) -> dict[str, Any]:
    """Section 4: for chosen images, LR | each method | HR with a synchronized zoom on one detail."""
    methods = _methods(res)
    ids = sorted(p.stem for p in (run_dir / "hr").glob("*.png"))
    scale = int((manifest.get("task") or {}).get("scale") or 0)
    short = column_info(primary or "").short
    chosen = I.choose_gallery(res.per_image, ids, methods, primary, _higher(primary), opts.n_gallery, short)
    figures = [_figure(run_dir, res, cols, image_id, why, scale, opts) for image_id, why in chosen]
    return {"figures": [f for f in figures if f], "n_ids": len(ids), "zoom": opts.zoom, "primary": primary}


def _worst(
    run_dir: Path, res: Results, cols: list[str], primary: str | None, gallery_ids: set[str], opts: ReportOptions
) -> dict[str, Any]:
    """Section 5: each method's worst images by the primary metric, and its failed images."""
    per = res.per_image
    out = []
    hib = _higher(primary)
    for m in _methods(res):
        items = []
        if primary is not None:
            d = per[(per["method"] == m) & per[primary].notna()]
            d = d.sort_values(primary, ascending=hib, kind="stable").head(opts.n_worst)
            for _, r in d.iterrows():
                i = str(r["image_id"])
                sr, hr = run_dir / "outputs" / m / f"{i}.png", run_dir / "hr" / f"{i}.png"
                items.append(
                    {
                        "id": i,
                        "sr": I.thumbnail_uri(sr) if sr.exists() else None,
                        "hr": I.thumbnail_uri(hr) if hr.exists() else None,
                        "values": _image_values(per, cols, m, i),
                        "anchor": f"img-{slug(i)}" if i in gallery_ids else None,
                    }
                )
        fails = res.failures[res.failures["method"].astype(str) == m].fillna("").to_dict("records")
        out.append({"method": m, "items": items, "failures": fails})
    return {"methods": out, "primary": primary, "title": column_info(primary or "").title, "n": opts.n_worst}


# ---------------------------------------------------------------------------------------------------------


def build_context(run_dir: Path, study: Any = None, opts: ReportOptions = ReportOptions()) -> dict[str, Any]:
    """Everything the template shows, computed from the run folder and the optional study analysis."""
    res = Results.load(run_dir)  # reads method and image_id as text: "0001" stays "0001"
    manifest = _read_json(run_dir / "manifest.json")
    spec = _read_yaml(run_dir / "spec.yaml")
    cols = metric_columns(res.summary)
    methods = _methods(res)
    primary = _primary(cols, res.per_image)
    table = _metric_table(res, manifest, cols)
    titles = {
        c: f"{column_info(c).title}  {h['arrow']} {h['direction']}"
        for c, h in zip(cols, table["headers"], strict=True)
    }
    gallery = _gallery(run_dir, res, manifest, cols, primary, opts)
    gallery_ids = {f["id"] for f in gallery["figures"]}
    analysis = load_study(study, run_dir=run_dir) if isinstance(study, (str, Path)) else study
    headline = _headline(res, cols, int(spec.get("seed") or 0))
    study_ctx = study_section(analysis, run_dir, manifest, opts.n_worst) if analysis is not None else None
    if study_ctx and study_ctx["rows"]:
        # The human verdict next to the metrics: fool rates, highest first.
        ranked = sorted(study_ctx["rows"], key=lambda r: -(r["fool_rate"] or 0))
        headline.append(
            "<b>Human study</b>: fool rate (50% = chosen as often as the real image) "
            + ", ".join(
                f"<b>{_esc(r['method'])}</b> {r['rate']} (task {_esc(r['task_id'])}, 95% CI {r['ci']})"
                for r in ranked
            )
            + "."
        )
    task = (manifest.get("task") or {}).get("name") or spec.get("task") or "custom"
    return {
        "title": f"Super-resolution benchmark \u2014 {task}",
        "run_dir": str(run_dir.resolve()),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "methods": methods,
        "n_images": _n_images(run_dir, manifest, res),
        "run": _run_facts(run_dir, manifest, spec, res),
        "table": table,
        "headline": headline,
        "paper": _paper(manifest, cols),
        "plot_dist": plots.metric_distributions(res.per_image, methods, cols, titles, res.summary),
        "plot_scatter": plots.psnr_vs_consistency(res.per_image, methods),
        "has_psnr_consistency": all(c in cols for c in ("psnr", "consistency")),
        "gallery": gallery,
        "worst": _worst(run_dir, res, cols, primary, gallery_ids, opts),
        "samples": samples_section(run_dir, res.per_image, methods),
        "sweeps": sweeps_context(run_dir, res.summary),  # metric vs swept value, perception-distortion plane
        "study": study_ctx,
    }


def render(context: dict[str, Any]) -> str:
    """The report's HTML from its context."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template("report.html.j2").render(**context)


def write_report(
    run_dir: str | Path, study: Any = None, out: str | Path | None = None, options: ReportOptions = ReportOptions()
) -> Path:
    """Write the run's report (default RUN_DIR/report.html) and return its path."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.csv").exists():
        raise FileNotFoundError(
            f"{run_dir} is not a finished run folder (no summary.csv); pass the --out folder of "
            "`evalsuite run benchmark`"
        )
    path = Path(out) if out else run_dir / "report.html"
    atomic_write_text(path, render(build_context(run_dir, study, options)))
    path.chmod(0o644)  # a report is meant to be read and forwarded
    return path
