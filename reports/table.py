"""Paper-ready tables: methods as rows, set x scale x metric as column groups, best bold, second underlined.

`build_table(runs, TableOptions(...))` reads suite folders (`suite.csv`) and plain run folders
(`summary.csv`) into one `Table`; `render(table, fmt)` writes it as booktabs LaTeX, GitHub Markdown, CSV or
HTML. Best and second best are marked per column among the methods (never the HR reference row, never
the paper's rows), in each metric's own direction (`evalsuite.metrics.base.column_info`), comparing the
values as printed: equal printed values share the mark. A cell without a value is "–" with its reason
in the notes under the table (a x4-only method at x2, a metric without weights).
"""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from evalsuite.metrics.base import column_info
from evalsuite.numbers import finite
from evalsuite.results import REFERENCE_ROW, Results, metric_columns
from evalsuite.suite import SUITE_CSV, load_suite
from reports.paper import paper_table

FORMATS = ("latex", "markdown", "csv", "html")
DASH = "\u2013"  # en dash: no value
PAPER_MARK = "\u2020"  # dagger: the paper's own numbers
PAPER_NOTE = (
    "\u2020 numbers printed in the SR3 paper (Saharia et al. 2021, arXiv 2104.07636), on the paper's own test "
    "data ({data}); not computed by these runs"
)


@dataclass(frozen=True)
class TableOptions:
    """What the table shows: metrics (None: every metric found), CIs, decimals (None: by magnitude), paper rows."""

    metrics: tuple[str, ...] | None = None
    ci: bool = False
    precision: int | None = None
    with_paper: bool = False
    caption: str | None = None


@dataclass(frozen=True)
class Group:
    """A column group: one test set at one scale (`task`: the runs' task name, for the paper's numbers)."""

    set: str
    scale: int
    task: str = ""

    @property
    def title(self) -> str:
        """'Set5 ×4'."""
        return f"{self.set} \u00d7{self.scale}"


@dataclass
class Cell:
    """One value of the table (None: no value, with the note's mark)."""

    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    note: int | None = None  # index into Table.notes
    mark: str = ""  # "best" | "second" | ""


@dataclass
class Row:
    """A table row: a method of the runs, the HR reference, or a paper row."""

    name: str
    kind: str  # "method" | "reference" | "paper"
    cells: list[Cell]


@dataclass
class Table:
    """The table: column groups x metrics, rows, decimals per column, notes (reasons for missing values)."""

    groups: list[Group]
    metrics: list[str]
    rows: list[Row]
    decimals: list[int]
    notes: list[str] = field(default_factory=list)
    caption: str = ""
    ci: bool = False

    @property
    def columns(self) -> list[tuple[Group, str]]:
        """(group, metric) per column, in order."""
        return [(g, m) for g in self.groups for m in self.metrics]

    @property
    def grouped(self) -> bool:
        """Two header rows (set x scale over metrics) when there is more than one group."""
        return len(self.groups) > 1


# ----------------------------------------------------------------------------------------------- reading runs


def _set_name(run_dir: Path) -> str:
    """A plain run's test set: the set's name from spec.yaml, or its data folder's name."""
    spec_path = run_dir / "spec.yaml"
    data = (yaml.safe_load(spec_path.read_text()) or {}).get("data") if spec_path.exists() else None
    if not data:
        return run_dir.name
    from evalsuite.testsets import find_set

    if find_set(str(data)) is not None:
        return str(data)
    return Path(str(data).rstrip("/")).name or str(data)


def _run_long(run_dir: Path) -> pd.DataFrame:
    """A plain run folder's summary in suite.csv's long form (set, scale, method, metric, ...)."""
    res = Results.load(run_dir)
    manifest_path = run_dir / "manifest.json"
    task = (json.loads(manifest_path.read_text()).get("task") or {}) if manifest_path.exists() else {}
    rows = []
    for _, r in res.summary.iterrows():
        note = str(r.get("notes")) if pd.notna(r.get("notes")) else ""
        for c in metric_columns(res.summary):
            rows.append({"set": _set_name(run_dir), "scale": int(task.get("scale") or 0), "task": task.get("name", ""),
                         "method": str(r["method"]), "metric": c, "mean": r.get(c), "ci_low": r.get(f"{c}_ci_low"),
                         "ci_high": r.get(f"{c}_ci_high"), "n": r.get("n_images"),
                         "note": "" if pd.notna(r.get(c)) else note})
    return pd.DataFrame(rows)


def load_runs(runs: list[str | Path]) -> pd.DataFrame:
    """Suite and run folders as one long table; a method found in two runs for the same column is named by run."""
    parts = []
    for r in runs:
        run_dir = Path(r)
        if (run_dir / SUITE_CSV).exists():
            df, _ = load_suite(run_dir)
            df["task"] = ""
        elif (run_dir / "summary.csv").exists():
            df = _run_long(run_dir)
        else:
            raise FileNotFoundError(
                f"{run_dir} is neither a suite folder ({SUITE_CSV}) nor a run folder (summary.csv); pass the --out "
                "folder of `evalsuite run suite` or `evalsuite run benchmark`"
            )
        df["run"] = run_dir.name or str(run_dir)
        parts.append(df)
    long = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if long.empty:
        return long
    long["note"] = long["note"].fillna("").astype(str)
    long["scale"] = long["scale"].astype(int)
    # The same method in two runs at the same column (yesterday's and today's checkpoint): name it by run.
    dup = long.duplicated(["set", "scale", "method", "metric"], keep=False)
    clash = set(long.loc[dup, "method"])
    if clash:
        long.loc[long["method"].isin(clash), "method"] = long["method"] + " [" + long["run"] + "]"
    return long


# ------------------------------------------------------------------------------------------- building a table


def _note_text(note: str, metric: str) -> str:
    """The part of a summary note that explains `metric`'s missing value (or the whole note)."""
    parts = [p.strip() for p in str(note).split(";") if p.strip()]
    mine = [p for p in parts if p.startswith(f"{metric}:")]
    return "; ".join(mine or parts) or "not computed"


def _decimals(values: list[float]) -> int:
    """Decimals by magnitude: 2 from 1 up (PSNR 30.12, NIQE 5.43), else 4 (SSIM 0.8123, LPIPS 0.1234)."""
    return 2 if values and max(abs(v) for v in values) >= 1 else 4


def fmt_value(v: float, decimals: int) -> str:
    """A value at `decimals` decimals."""
    return f"{v:.{decimals}f}"


def _mark(table: Table) -> None:
    """Best (bold) and second (underlined) per column among the method rows, in the metric's direction."""
    for k, (_, metric) in enumerate(table.columns):
        hib = column_info(metric).higher_is_better
        if hib is None:
            continue
        cells = [r.cells[k] for r in table.rows if r.kind == "method" and r.cells[k].value is not None]
        # Compare the values as printed, so two methods that read the same share the mark.
        shown = sorted({round(c.value, table.decimals[k]) for c in cells}, reverse=hib)
        if len(cells) < 2:
            continue
        for c in cells:
            v = round(c.value, table.decimals[k])
            if v == shown[0]:
                c.mark = "best"
            elif len(shown) > 1 and v == shown[1] and len(cells) >= 3:
                c.mark = "second"


def build_table(runs: list[str | Path], opts: TableOptions = TableOptions()) -> Table:
    """The table of one or more suite or run folders."""
    long = load_runs(runs)
    if long.empty:
        raise ValueError(f"no results in {', '.join(map(str, runs))}")
    found = list(dict.fromkeys(long["metric"]))
    if opts.metrics:
        unknown = [m for m in opts.metrics if m not in found]
        if unknown:
            raise ValueError(f"--metrics {','.join(unknown)}: not in these runs; they have {', '.join(found)}")
        metrics = list(opts.metrics)
    else:
        # Metrics with a value somewhere (a column empty everywhere is left out, with its reason in the notes).
        metrics = [m for m in found if long.loc[long["metric"] == m, "mean"].notna().any()] or found
    long = long[long["metric"].isin(metrics)]
    keys = list(dict.fromkeys(zip(long["set"], long["scale"], strict=True)))
    sets = list(dict.fromkeys(s for s, _ in keys))
    keys.sort(key=lambda k: (sets.index(k[0]), k[1]))
    task_of = {(s, sc): t for s, sc, t in zip(long["set"], long["scale"], long["task"], strict=True) if t}
    groups = [Group(s, sc, task_of.get((s, sc), "")) for s, sc in keys]
    methods = [m for m in dict.fromkeys(long["method"]) if m != REFERENCE_ROW]
    table = Table(groups, metrics, [], [], caption=opts.caption or "", ci=opts.ci)
    index = {(r.set, r.scale, r.method, r.metric): r for r in long.itertuples()}
    reasons: dict[str, list[str]] = {}

    def cell(g: Group, method: str, metric: str, explain: bool = True) -> Cell:
        r = index.get((g.set, g.scale, method, metric))
        if not explain:  # the HR reference row: values only for metrics that score HR images, no notes
            return Cell(*(finite(getattr(r, k)) for k in ("mean", "ci_low", "ci_high"))) if r is not None else Cell()
        if r is None:
            why = "not run on this set and scale"
        elif finite(r.mean) is not None:
            return Cell(finite(r.mean), finite(r.ci_low), finite(r.ci_high))
        else:
            why = _note_text(r.note, metric)
        # One note per reason, naming the methods it applies to (filled in below).
        if why not in reasons:
            reasons[why] = []
        if method not in reasons[why]:
            reasons[why].append(method)
        return Cell(note=list(reasons).index(why))

    for m in methods:
        table.rows.append(Row(m, "method", [cell(g, m, c) for g, c in table.columns]))
    if REFERENCE_ROW in set(long["method"]):
        ref = [cell(g, REFERENCE_ROW, c, explain=False) for g, c in table.columns]
        if any(c.value is not None for c in ref):
            table.rows.append(Row(REFERENCE_ROW, "reference", ref))
    notes = [f"{why} ({', '.join(ms)})" for why, ms in reasons.items()]
    if opts.with_paper:
        _add_paper_rows(table, notes)
    table.notes = notes
    for k, _col in enumerate(table.columns):
        vals = [r.cells[k].value for r in table.rows if r.cells[k].value is not None]
        table.decimals.append(opts.precision if opts.precision is not None else _decimals(vals))
    _mark(table)
    return table


def _add_paper_rows(table: Table, notes: list[str]) -> None:
    """The paper's rows, where a column's task is one the paper reports (faces-16-128, imagenet-64-256)."""
    papers = {g.task: paper_table(g.task) for g in table.groups if paper_table(g.task) is not None}
    if not papers:
        tasks = ", ".join(sorted({g.task or f"x{g.scale}" for g in table.groups}))
        raise ValueError(
            f"--with-paper: the SR3 paper reports no numbers for these runs' tasks ({tasks}); it has tables for "
            "faces-16-128 and imagenet-64-256 (`--task`)"
        )
    names = list(dict.fromkeys(name for p in papers.values() for name, _ in p.rows))
    for name in names:
        cells = []
        for g, metric in table.columns:
            p = papers.get(g.task)
            v = p.value(name, metric) if p is not None else None
            cells.append(Cell(v))
        if any(c.value is not None for c in cells):
            table.rows.append(Row(f"{name}{PAPER_MARK}", "paper", cells))
    for p in papers.values():
        notes.append(PAPER_NOTE.format(data=p.data))


# --------------------------------------------------------------------------------------------------- renderers


def _letter(k: int) -> str:
    return "abcdefghijklmnopqrstuvwxyz"[k % 26] * (1 + k // 26)


def _header(metric: str) -> tuple[str, str]:
    info = column_info(metric)
    return info.short, info.arrow


def latex_escape(text: str) -> str:
    """Text safe inside LaTeX (special characters escaped; ×, –, † as macros)."""
    out = []
    for ch in str(text):
        out.append({
            "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\u00d7": r"$\times$",
            DASH: "--", PAPER_MARK: r"\textsuperscript{\dag}", "\u2191": r"$\uparrow$", "\u2193": r"$\downarrow$",
            "\u2192": r"$\rightarrow$",
        }.get(ch, ch))
    return "".join(out)


def _text(table: Table, k: int, c: Cell, bold: tuple[str, str], under: tuple[str, str], note: str, ci: str) -> str:
    """A cell as text in some markup: value (marked), optional CI, or a dash with the note's letter."""
    if c.value is None:
        return DASH if c.note is None else DASH + note.format(_letter(c.note))
    d = table.decimals[k]
    text = fmt_value(c.value, d)
    if c.mark == "best":
        text = bold[0] + text + bold[1]
    elif c.mark == "second":
        text = under[0] + text + under[1]
    if table.ci and c.ci_low is not None and c.ci_high is not None:
        text += ci.format(fmt_value(c.ci_low, d), fmt_value(c.ci_high, d))
    return text


def to_latex(table: Table) -> str:
    """A booktabs `table` environment (needs \\usepackage{booktabs}); best \\textbf, second \\underline."""
    n = len(table.metrics)
    cols = "l" + " ".join("r" * n for _ in table.groups)
    lines = [
        "% evalsuite table: needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
    ]
    if table.caption:
        lines.append(f"\\caption{{{latex_escape(table.caption)}}}")
    lines += [f"\\begin{{tabular}}{{{cols}}}", "\\toprule"]
    if table.grouped:
        spans = " & ".join(f"\\multicolumn{{{n}}}{{c}}{{{latex_escape(g.title)}}}" for g in table.groups)
        lines.append(f" & {spans} \\\\")
        lines.append(" ".join(f"\\cmidrule(lr){{{2 + i * n}-{1 + (i + 1) * n}}}" for i in range(len(table.groups))))
    heads = [latex_escape(f"{s}{a}") for g in table.groups for s, a in [_header(m) for m in table.metrics]]
    first = "Method" if table.grouped else f"Method ({latex_escape(table.groups[0].title)})"
    lines += [" & ".join([first, *heads]) + " \\\\", "\\midrule"]
    kind = None
    for r in table.rows:
        if kind is not None and r.kind != kind:
            lines.append("\\midrule")
        kind = r.kind
        cells = [
            _text(table, k, c, ("\\textbf{", "}"), ("\\underline{", "}"), "\\textsuperscript{{{}}}",
                  "\\,{{\\scriptsize[{}, {}]}}").replace(DASH, "--")
            for k, c in enumerate(r.cells)
        ]
        lines.append(" & ".join([latex_escape(r.name), *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    legend = "Best in bold, second underlined (per column, in each metric's direction: $\\uparrow$ higher is "
    legend += "better, $\\downarrow$ lower is better)."
    if table.ci:
        legend += " Brackets: 95\\% bootstrap confidence interval over images."
    notes = [legend] + [
        (f"\\textsuperscript{{{_letter(i)}}}" if not t.startswith(PAPER_MARK) else "") + latex_escape(t)
        for i, t in enumerate(table.notes)
    ]
    lines.append("\\par\\smallskip{\\footnotesize " + " \\\\\n".join(notes) + "}")
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def latex_document(body: str) -> str:
    """A compilable document around a table (for checking the LaTeX)."""
    return (
        "\\documentclass{article}\n\\usepackage{booktabs}\n"
        "\\usepackage[margin=1cm,landscape]{geometry}\n\\begin{document}\n" + body + "\\end{document}\n"
    )


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("*", "\\*").replace("_", "\\_").replace("<", "&lt;")


def to_markdown(table: Table) -> str:
    """A GitHub pipe table: best **bold**, second <u>underlined</u>; notes under it."""
    heads = []
    for g, m in table.columns:
        s, a = _header(m)
        heads.append(f"{g.title} {s} {a}".strip() if table.grouped else f"{s} {a}".strip())
    first = "Method" if table.grouped else f"Method ({table.groups[0].title})"
    lines = []
    if table.caption:
        lines += [f"**{_md_escape(table.caption)}**", ""]
    lines += ["| " + " | ".join([first, *heads]) + " |", "|:--" + "|--:" * len(heads) + "|"]
    for r in table.rows:
        cells = [_text(table, k, c, ("**", "**"), ("<u>", "</u>"), "<sup>{}</sup>", " [{}, {}]")
                 for k, c in enumerate(r.cells)]
        name = _md_escape(r.name) if r.kind == "method" else f"*{_md_escape(r.name)}*"
        lines.append("| " + " | ".join([name, *cells]) + " |")
    legend = "Best in **bold**, second <u>underlined</u> (per column; \u2191 higher is better, \u2193 lower is better)."
    lines += ["", legend + (" Brackets: 95% bootstrap CI over images." if table.ci else "")]
    for i, t in enumerate(table.notes):
        lines.append(("" if t.startswith(PAPER_MARK) else f"<sup>{_letter(i)}</sup> ") + _md_escape(t) + "  ")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """A wide CSV: one row per method, one column per set/scale/metric (and its CI with --ci), numbers rounded."""
    data: list[dict[str, Any]] = []
    for r in table.rows:
        row: dict[str, Any] = {"method": r.name, "kind": r.kind}
        for k, ((g, m), c) in enumerate(zip(table.columns, r.cells, strict=True)):
            name = f"{g.set}/x{g.scale}/{m}" if table.grouped else m
            d = table.decimals[k]
            row[name] = round(c.value, d) if c.value is not None else None
            if table.ci:
                row[f"{name}_ci_low"] = round(c.ci_low, d) if c.ci_low is not None else None
                row[f"{name}_ci_high"] = round(c.ci_high, d) if c.ci_high is not None else None
            row[f"{name}_mark"] = c.mark
        data.append(row)
    buf = io.StringIO()
    pd.DataFrame(data).to_csv(buf, index=False)
    return buf.getvalue()


def to_html(table: Table, standalone: bool = True) -> str:
    """An HTML table (<b> best, <u> second, colspan group headers); `standalone` wraps it in a small page."""
    e = html.escape
    n = len(table.metrics)
    out = ['<table class="sr-table">']
    if table.caption:
        out.append(f"<caption>{e(table.caption)}</caption>")
    out.append("<thead>")
    if table.grouped:
        out.append("<tr><th></th>" + "".join(f'<th colspan="{n}">{e(g.title)}</th>' for g in table.groups) + "</tr>")
    first = "Method" if table.grouped else f"Method ({table.groups[0].title})"
    heads = "".join(
        f'<th title="{e(column_info(m).direction)}">{e(" ".join(_header(m)).strip())}</th>' for _, m in table.columns
    )
    out.append(f"<tr><th>{e(first)}</th>{heads}</tr></thead><tbody>")
    for r in table.rows:
        cells = []
        for k, c in enumerate(r.cells):
            t = _text(table, k, c, ("<b>", "</b>"), ("<u>", "</u>"), "<sup>{}</sup>",
                      ' <span class="ci">[{}, {}]</span>')
            cells.append(f"<td>{t}</td>")
        out.append(f'<tr class="{r.kind}"><th>{e(r.name)}</th>{"".join(cells)}</tr>')
    out.append("</tbody></table>")
    notes = ["Best in <b>bold</b>, second <u>underlined</u> (per column; \u2191 higher is better, \u2193 lower is "
             "better)." + (" Brackets: 95% bootstrap CI over images." if table.ci else "")]
    notes += [("" if t.startswith(PAPER_MARK) else f"<sup>{_letter(i)}</sup> ") + e(t) for i, t in
              enumerate(table.notes)]
    out.append('<p class="sr-notes">' + "<br>".join(notes) + "</p>")
    body = "\n".join(out)
    if not standalone:
        return body
    css = ("body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse}"
           "th,td{padding:.25em .6em;text-align:right}th:first-child,td:first-child{text-align:left}"
           "thead tr:first-child th[colspan]{text-align:center;border-bottom:1px solid #999}"
           "thead tr:last-child th{border-bottom:1px solid #000}thead{border-top:2px solid #000}"
           "tbody{border-bottom:2px solid #000}.ci{color:#666;font-size:.85em}tr.paper th{font-style:italic}"
           ".sr-notes{font-size:.85em;color:#333}")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(table.caption or "SR table")}'
            f"</title><style>{css}</style></head><body>\n{body}\n</body></html>\n")


def render(table: Table, fmt: str) -> str:
    """The table in one of FORMATS."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: pick one of {', '.join(FORMATS)}")
    return {"latex": to_latex, "markdown": to_markdown, "csv": to_csv, "html": to_html}[fmt](table)
