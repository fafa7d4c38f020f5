"""The HTML report: its numbers equal the run's files, partial inputs are explained, a study is shown, and
a real headless Chromium opens it with no console error and no broken image."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from evalsuite import cli
from evalsuite.runner import run
from evalsuite.spec import BenchmarkSpec
from reports.html import fmt, write_report
from reports.images import Detail, choose_gallery, crop_box, find_detail

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
METHODS = ("bicubic", "nearest", "lanczos")
METRICS = ("psnr", "ssim", "consistency", "detail")


# ------------------------------------------------------------------------------------------- helpers
class Elements(HTMLParser):
    """Every element's tag, attributes and direct+nested text, in document order (enough for assertions)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[dict] = []
        self.stack: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        el = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.items.append(el)
        if tag not in ("img", "br", "meta", "link", "input"):
            self.stack.append(el)

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()["tag"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for el in self.stack:
            el["text"] += data

    def find(self, tag: str | None = None, **attrs: str) -> list[dict]:
        """Elements with this tag whose attributes have these values (class matches one word)."""
        out = []
        for el in self.items:
            if tag and el["tag"] != tag:
                continue
            ok = True
            for k, v in attrs.items():
                k = k.rstrip("_").replace("_", "-")
                have = el["attrs"].get(k)
                if k == "class":
                    ok &= have is not None and v in have.split()
                else:
                    ok &= have == v
            if ok:
                out.append(el)
        return out


def section(html: str, sid: str) -> str:
    """The HTML of <section id=sid>."""
    m = re.search(rf'<section[^>]*id="{sid}".*?</section>', html, re.S)
    assert m, f"no section {sid}"
    return m.group(0)


def decode(uri: str) -> Image.Image:
    """A data: URI image."""
    assert uri.startswith("data:image/"), uri[:40]
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def make_data(folder: Path) -> Path:
    """Five real photos (scikit-image's, public domain), short side 136; a too-small and a broken file."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "chelsea", "coffee", "stereo_motorcycle", "rocket"):
        arr = getattr(data, name)()
        img = Image.fromarray(arr[0] if isinstance(arr, tuple) else arr).convert("RGB")
        w, h = img.size
        k = 136 / min(w, h)
        img.resize((round(w * k), round(h * k)), Image.Resampling.LANCZOS).save(folder / f"{name}.png")
    Image.fromarray(data.camera()).convert("RGB").resize((64, 64)).save(folder / "small.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def bench(data: Path, out: Path, methods, metrics=METRICS, **kw) -> Path:
    """A real benchmark run (the runner writes report.html at its end)."""
    spec = BenchmarkSpec(data=str(data), task=kw.pop("task", "faces-16-128"), methods=tuple(methods),
                         metrics=tuple(metrics), out=str(out), device="cpu", workers=2, bootstrap=300, **kw)
    run(spec, log=lambda *a, **k: None, progress=False)
    return out


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """Real photos for the faces 16->128 task, plus two files the run must skip."""
    return make_data(tmp_path_factory.mktemp("report_data"))


@pytest.fixture(scope="module")
def run_dir(data_dir, tmp_path_factory) -> Path:
    """A real run: three methods, three metrics, five images, two skipped files."""
    return bench(data_dir, tmp_path_factory.mktemp("report_run") / "run", METHODS)


# ------------------------------------------------------------------------------------------- content
def test_runner_writes_report_whose_metric_table_equals_summary_csv(run_dir):
    html = (run_dir / "report.html").read_text()
    summary = pd.read_csv(run_dir / "summary.csv")
    doc = Elements(section(html, "results"))
    cells = [td for col in METRICS for td in doc.find("td", data_metric=col)]
    assert len(cells) == len(METHODS) * len(METRICS)
    rows = doc.find("tr")
    seen = 0
    for tr in rows:
        method = tr["attrs"].get("data-method")
        if method is None:
            continue
        srow = summary[summary["method"] == method].iloc[0]
        k = doc.items.index(tr)
        tds = [el for el in doc.items[k + 1: k + 40] if el["tag"] == "td" and "data-metric" in el["attrs"]]
        for td in tds[: len(METRICS)]:
            col = td["attrs"]["data-metric"]
            assert float(td["attrs"]["data-value"]) == srow[col]
            assert float(td["attrs"]["data-ci-low"]) == srow[f"{col}_ci_low"]
            assert float(td["attrs"]["data-ci-high"]) == srow[f"{col}_ci_high"]
            # What a reader sees is the same number, rounded, with its interval.
            expected = f"{fmt(srow[col])}[{fmt(srow[col + '_ci_low'])}, {fmt(srow[col + '_ci_high'])}]"
            assert td["text"].replace("\u2605", "").strip() == expected
            seen += 1
    assert seen == len(METHODS) * len(METRICS)
    # The best value per column is marked, in the metric's direction; exactly one per column here.
    for col, higher in (("psnr", True), ("ssim", True), ("consistency", False)):
        best = summary.loc[summary[col].idxmax() if higher else summary[col].idxmin(), "method"]
        marked = [td for td in doc.find("td", data_metric=col) if "best" in td["attrs"]["class"].split()]
        assert len(marked) == 1
        assert float(marked[0]["attrs"]["data-value"]) == summary.loc[summary["method"] == best, col].item()
    headers = " ".join(th["text"] for th in doc.find("th"))
    assert "PSNR (dB) \u2191" in headers and "Consistency (\u00d71e-5) \u2193" in headers
    assert "higher is better" in headers and "lower is better" in headers
    # Detail has no better direction (0 dB is the truth): no arrow, no best mark.
    assert "Detail (dB, 0 = HR)" in headers and "no direction" in headers
    assert not [td for td in doc.find("td", data_metric="detail") if "best" in td["attrs"]["class"].split()]


def test_report_says_what_was_run(run_dir):
    html = (run_dir / "report.html").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    text = Elements(section(html, "run")).items[0]["text"]
    assert "faces-16-128" in text and "16\u00d716 \u2192 128\u00d7128" in text
    assert f"{manifest['n_images']} used, 2 skipped" in text
    for sha in manifest["inputs"].values():
        assert sha in text
    assert manifest["device"] in text and manifest["versions"]["torch"] in text
    errors = pd.read_csv(run_dir / "errors.csv")
    assert len(errors) == 2
    for _, e in errors.iterrows():
        assert Path(e["path"]).name in text and e["reason"] in text
    for m in METHODS:
        assert m in text
    # The colour-space/crop convention names every metric it governs, under a label that says what it is.
    assert "Convention: colour space and crop" in text and "psnr ssim" not in text
    assert "(PSNR, SSIM, MS-SSIM; NIQE and the detail metrics take the crop only)" in text


def test_paper_numbers_beside_table_only_for_matching_task(run_dir, data_dir, tmp_path):
    html = (run_dir / "report.html").read_text()
    paper = Elements(section(html, "results")).find("table", id="paper-table")
    assert paper, "faces-16-128 run must show SR3 Table 1"
    text = paper[0]["text"]
    assert "the paper's numbers" in text and "Table 1" in text
    for v in ("PULSE", "16.88", "161.1", "Regression", "23.96", "2.71", "SR3", "23.04", "2.68"):
        assert v in text
    # A custom scale has no paper counterpart.
    other = bench(data_dir, tmp_path / "x4", ["bicubic"], ["psnr"], task=None, scale=4, limit=2)
    assert 'id="paper-table"' not in (other / "report.html").read_text()


def test_gallery_shows_lr_each_method_hr_with_same_detail(run_dir):
    html = (run_dir / "report.html").read_text()
    gal = Elements(section(html, "gallery"))
    figures = gal.find("figure", class_="cmp")
    n_ids = len(list((run_dir / "hr").glob("*.png")))
    assert len(figures) == min(6, n_ids) == 5
    per = pd.read_csv(run_dir / "per_image.csv")
    # Each method's worst PSNR image is among those shown.
    shown = {f["attrs"]["id"].removeprefix("img-") for f in figures}
    for m in METHODS:
        d = per[per["method"] == m]
        assert d.loc[d["psnr"].idxmin(), "image_id"] in shown
    imgs = [el for el in gal.find("img") if el["attrs"].get("src")]
    assert len(imgs) == 5 * (len(METHODS) + 2)
    for el in imgs:
        im = decode(el["attrs"]["src"])
        assert im.format == "PNG"
        assert im.size == ((16, 16) if el["attrs"]["alt"].startswith("LR") else (128, 128))
    # Every full view carries one red box at the same place; every zoom panel is scaled the same way.
    for fig in re.findall(r'<figure class="cmp".*?</figure>', html, re.S):
        boxes = set(re.findall(r'class="box" style="([^"]+)"', fig))
        zooms = re.findall(r'<div class="zoom"><img [^>]*style="([^"]+)"', fig)
        assert len(boxes) == 1 and len(zooms) == len(METHODS) + 2 and len(set(zooms)) == 1


def test_worst_images_are_the_lowest_psnr_per_method(run_dir):
    html = (run_dir / "report.html").read_text()
    per = pd.read_csv(run_dir / "per_image.csv")
    worst = section(html, "worst")
    for m in METHODS:
        row = re.search(rf'<div class="wm">{m}</div>(.*?)(?=<div class="wrow">|</section>)', worst, re.S)[1]
        listed = re.findall(r'<a href="#img-([^"]+)">', row)
        expected = per[per["method"] == m].sort_values("psnr", kind="stable")["image_id"].head(3).tolist()
        assert listed == expected


def test_plots_are_inline_svg_and_file_is_self_contained(run_dir):
    html = (run_dir / "report.html").read_text()
    for pid in ("plot-dist", "plot-scatter"):
        m = re.search(rf'<figure class="plot" id="{pid}">\s*<svg', html)
        assert m, pid
    # Method names label the plots as text (readable, searchable, printable).
    dist = re.search(r'id="plot-dist">(.*?)</figure>', html, re.S).group(1)
    for m in METHODS:
        assert f">{m}<" in dist
    # Nothing is fetched: every src is a data URI, no stylesheet or script is linked.
    for src in re.findall(r'\ssrc="([^"]*)"', html):
        assert src.startswith("data:"), src[:60]
    assert not re.search(r'<(script|link)[^>]*(src|href)="(?!data:)', html)
    assert not re.search(r"url\((?!data:|#)", html)
    size = (run_dir / "report.html").stat().st_size
    assert size < 3_000_000, f"report of 5 images is {size} bytes"


def test_partial_inputs_are_explained(run_dir, data_dir, tmp_path):
    # A folder method with outputs for only two images: it fails on the others, alone.
    folder = tmp_path / "precomputed"
    folder.mkdir()
    ids = sorted(p.stem for p in (run_dir / "outputs" / "bicubic").glob("*.png"))
    for i in ids[:2]:
        shutil.copy(run_dir / "outputs" / "bicubic" / f"{i}.png", folder / f"{i}.png")
    part = bench(data_dir, tmp_path / "partial", ["bicubic", f"folder:{folder}"], batch_size=1)
    html = (part / "report.html").read_text()
    failures = pd.read_csv(part / "failures.csv")
    assert len(failures) == len(ids) - 2
    run_text = Elements(section(html, "run")).items[0]["text"]
    for _, f in failures.iterrows():
        assert f["image_id"] in run_text and f["reason"] in run_text
    label = "folder-precomputed"
    assert re.search(rf'<tr data-method="{label}"><td><b>{label}</b></td><td class="num">2</td>', html)
    gallery = section(html, "gallery")
    assert gallery.count("failed on this image: ") == len(ids) - 2

    # A metric left empty for lack of weights (the runner's files: empty column, note in manifest and notes).
    nolp = tmp_path / "nolpips"
    shutil.copytree(run_dir, nolp)
    msg = "weights 'lpips-alex' (for lpips (net alex)) not found: put alexnet-owt-7be5be79.pth at /w/x.pth"
    s = pd.read_csv(nolp / "summary.csv")
    for c in ("lpips", "lpips_ci_low", "lpips_ci_high"):
        s.insert(len(s.columns) - 1, c, np.nan)
    s["notes"] = f"lpips: {msg}"
    s.to_csv(nolp / "summary.csv", index=False)
    man = json.loads((nolp / "manifest.json").read_text())
    man["metric_notes"] = {"lpips": msg}
    (nolp / "manifest.json").write_text(json.dumps(man))
    html = write_report(nolp).read_text()
    res = section(html, "results")
    text = Elements(res).items[0]["text"]
    assert "LPIPS has no values." in text and msg in text
    assert text.count(msg) == 1, "a note shared by every method is explained once, under the table"
    assert [td["text"] for td in Elements(res).find("td", data_metric="lpips")] == ["\u2014"] * len(METHODS)

    # A bare run folder (images and summary.csv only, as other tools write it): facts said to be unknown.
    from study_support import make_run_folder

    bare = make_run_folder(tmp_path / "bare", n_images=2)
    html = write_report(bare).read_text()
    assert "manifest.json is missing" in html and "LR input (\u00f74)" in html
    assert "2 images" in html and "no metric has per-image values" in html

    # A run with one method, on files named by numbers: no best marks, nothing to rank, every section,
    # and ids such as "0001" stay names (their images and values are found).
    numbered = tmp_path / "numbered"
    numbered.mkdir()
    for k, name in enumerate(("astronaut", "coffee"), 1):
        shutil.copy(data_dir / f"{name}.png", numbered / f"{k:04d}.png")
    one = bench(numbered, tmp_path / "one", ["bicubic"])
    html = (one / "report.html").read_text()
    assert ' best"' not in section(html, "results") and "nothing to rank" in html
    per = pd.read_csv(one / "per_image.csv", dtype={"image_id": str})
    expected = per.sort_values("psnr", kind="stable")["image_id"].tolist()
    assert sorted(expected) == ["0001", "0002"]
    assert re.findall(r'<a href="#img-([^"]+)">', section(html, "worst")) == expected
    assert len(re.findall(r">PSNR \d", section(html, "gallery"))) == 2  # each image's value, found by its id
    for sid in ("run", "results", "plots", "gallery", "worst"):
        section(html, sid)


def test_report_cli_and_clear_errors(run_dir, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert cli.main(["report", str(run_dir), "-o", str(out), "--gallery", "2", "--worst", "1"]) == 0
    html = out.read_text()
    assert html.count('<figure class="cmp"') == 2
    assert str(out.resolve()) in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "summary.csv" in err
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(run_dir), "--study", str(tmp_path / "empty"), "-o", str(out)]) == 2
    assert "study.json" in capsys.readouterr().err


def test_detail_and_gallery_choice():
    # The detail box lands where the outputs differ from HR.
    hr = np.zeros((64, 64, 3), np.float32)
    out = hr.copy()
    out[40:50, 8:18] = 1.0
    d = find_detail(hr, [out], 16)
    assert d.size == 16 and d.x <= 8 and d.x + 16 >= 18 and d.y <= 40 and d.y + 16 >= 50
    # Large images are cropped around the detail, on the LR grid.
    assert crop_box(2000, 1000, Detail(1500, 700, 100), 512, 4) == (1292, 488, 1804, 1000)
    assert crop_box(300, 200, Detail(0, 0, 50), 512, 4) == (0, 0, 300, 200)
    per = pd.DataFrame({"method": ["a"] * 3 + ["b"] * 3, "image_id": ["x", "y", "z"] * 2,
                        "psnr": [30, 20, 25, 29, 21, 15]})
    got = choose_gallery(per, ["x", "y", "z"], ["a", "b"], "psnr", True, 2)
    assert got == [("y", "worst psnr of a"), ("z", "worst psnr of b")]
    got = choose_gallery(per, ["x", "y", "z"], ["a", "b"], "psnr", True, 3, "PSNR")
    assert got[2] == ("x", "methods differ most in PSNR")  # spread: z 7.1 (already in), then x and y 0.7


# ------------------------------------------------------------------------------------------- study
@pytest.fixture(scope="module")
def study_db(run_dir, tmp_path_factory) -> Path:
    """A real study database (SQLite) on the run, answered by simulated raters."""
    from studies.service import create_study, invite_raters
    from studies.store import Store

    db = tmp_path_factory.mktemp("study") / "study.db"
    create_study(run_dir, str(db), task=1, methods=METHODS, exposure_s=3.0, n_catch=2, n_practice=1, seed=0)
    tokens = invite_raters(str(db), 6)
    store = Store(str(db), create=False)
    try:
        plan = store.assignments_frame()
        fool = {"bicubic": 0.3, "lanczos": 0.4, "nearest": 0.08}  # nearest is easy to spot
        rng = np.random.default_rng(0)
        for _, token in tokens:
            rater = store.rater_by_token(token)
            mine = plan[plan["rater_index"] == rater.index].set_index("position")
            for t in store.trials(rater.id):
                row = mine.loc[t.position]
                real = row["real_side"]
                fake = "right" if real == "left" else "left"
                # Rater 0 answers at random (and fails the catch trials); the others answer by method.
                p_fake = 0.0 if t.kind == "catch" else fool.get(row["method"], 0.5)
                p_fake = 0.5 if rater.index == 0 else p_fake
                store.submit(rater.id, t.assignment_id, fake if rng.random() < p_fake else real)
    finally:
        store.dispose()
    return db


def test_study_section_from_database_and_analysis_folder(run_dir, study_db, tmp_path):
    from studies.analysis import analyze

    analysis = analyze(str(study_db), n_resamples=200)
    folder = analysis.save(tmp_path / "analysis")
    out = write_report(run_dir, study=folder, out=tmp_path / "with_study.html")
    html = out.read_text()
    st = section(html, "study")
    fr = analysis.fool_rates
    assert len(fr) == len(METHODS)
    for _, r in fr.iterrows():
        row = re.search(rf'<tr data-method="{r["method"]}">(.*?)</tr>', section(st, "study"), re.S).group(1)
        cell = re.search(r'data-value="([^"]+)">([^<]+)<', row)
        assert float(cell.group(1)) == r["fool_rate"]
        assert cell.group(2) == f"{100 * r['fool_rate']:.1f}%"
        assert f"{100 * r['ci_low']:.1f}% \u2013 {100 * r['ci_high']:.1f}%" in row
        assert "Wilson" not in row and row.count("\u2013") == 1  # one interval per number
        assert f">{int(r['n_judgments'])}<" in row and f">{int(r['n_raters'])}<" in row
    n_excl = int(analysis.raters["excluded"].sum())
    assert n_excl >= 1, "the careless rater fails the catch trials"
    # Counts after the exclusions, with the excluded raters and their judgments shown.
    kept = len(analysis.raters) - n_excl
    assert f"{int(fr['n_judgments'].sum())} method-vs-real judgments by the {kept} raters kept" in st
    assert f"{n_excl} of {len(analysis.raters)} raters excluded" in st
    assert re.search(r'<figure class="plot" id="plot-fool">\s*<svg', st)
    assert "Most and least convincing images" in st and st.count("<img ") >= len(METHODS)
    # The paper's human-study headline for this task is labelled as the paper's.
    assert "the paper's result" in st and "close to 50%" in st
    # The database itself works as --study too (analyze is run by the report).
    out2 = tmp_path / "db.html"
    assert cli.main(["report", str(run_dir), "--study", str(study_db), "-o", str(out2)]) == 0
    assert 'id="fool-table"' in out2.read_text()


# ------------------------------------------------------------------------------------------- browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (bash scripts/setup-system.sh)")
def test_report_in_headless_chromium(run_dir, study_db, tmp_path):
    from playwright.sync_api import sync_playwright

    from studies.extended import analyze_study

    # The whole study section: fool rates, ranking, win matrix, metric agreement, reliability, power, exclusions.
    folder = analyze_study(str(study_db), run_dir=run_dir, n_resamples=200).save(tmp_path / "analysis")
    path = write_report(run_dir, study=folder, out=tmp_path / "report.html")
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as p:
        # Playwright gives the browser a fresh temporary profile of its own.
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.set_default_timeout(180_000)  # a full-page screenshot on 2 busy cores takes a while
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in (
                "error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:80]}"))
            page.on("request", lambda r: None if r.url.startswith(("file:", "data:")) else problems.append(
                f"network request: {r.url}"))
            page.goto(path.resolve().as_uri())
            page.wait_for_load_state("load")
            n_images = page.evaluate("document.images.length")
            broken = page.evaluate(
                "Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt)"
            )
            assert n_images > 40 and broken == []
            # Moving the pointer over one image moves the detail in every image of that comparison.
            fig = page.locator("figure.cmp").first
            before = fig.locator(".zoom img").first.evaluate("e => e.style.left")
            view = fig.locator(".view").nth(1)
            box = view.bounding_box()
            view.hover(position={"x": 0.1 * box["width"], "y": 0.9 * box["height"]})
            lefts = fig.locator(".zoom img").evaluate_all("es => es.map(e => e.style.left)")
            tops = fig.locator(".view .box").evaluate_all("es => es.map(e => e.style.top)")
            assert len(set(lefts)) == 1 and len(set(tops)) == 1 and lefts[0] != before
            page.locator("button[data-zoom='8']").click()
            widths = fig.locator(".zoom img").evaluate_all("es => es.map(e => parseFloat(e.style.width))")
            assert len(set(widths)) == 1 and widths[0] == pytest.approx(800.0)
            page.mouse.move(0, 0)
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
            page.screenshot(path=str(ARTIFACTS / "report-top.png"))
            page.locator("#study").screenshot(path=str(ARTIFACTS / "report-study.png"))
            # Each part of the study section is laid out with a size (rendered, not hidden or collapsed).
            for part in ("#plot-fool svg", "#plot-ranking-1 svg", "#plot-win-1 svg", "table.agreement",
                         "table.reliability", "table.exclusions", "#study-power"):
                box = page.locator(part).first.bounding_box()
                assert box and box["width"] > 100 and box["height"] > 10, part
        finally:
            browser.close()
    assert problems == []
    assert (ARTIFACTS / "report.png").stat().st_size > 50_000


def test_fool_reading_says_every_method_was_told_apart_only_when_every_upper_bound_is_below_half():
    from reports.study_section import fool_reading

    fr = pd.DataFrame({"method": ["a", "b"], "fool_rate": [0.40, 0.30], "n_judgments": [200, 12],
                       "n_raters": [20, 3], "ci_low": [0.35, 0.05], "ci_high": [0.45, 0.62]})
    # b's rate is lower but its interval reaches 50%: raters did not tell every method apart.
    assert "every method" not in fool_reading(fr)
    assert "could tell every method" in fool_reading(fr.assign(ci_high=[0.45, 0.49]))
    text = fool_reading(fr.assign(ci_high=[0.55, 0.62]))
    assert "not distinguishable from the real images at this sample size (95% CI 35.0% to 55.0%)" in text
    assert "(indistinguishable" not in text
    assert "preferred it to the real image" in fool_reading(fr.assign(ci_low=[0.52, 0.05], ci_high=[0.6, 0.62]))


def test_numbers_near_zero_print_without_a_minus_sign():
    # Duels-only Bradley-Terry scores are centred on 0: one at -0.001 must read 0.00 in the table.
    from reports.study_section import num

    assert num(-0.001) == "0.00" and num(-0.006) == "-0.01" and num(0.004, 1) == "0.0" and num(None) != "0.00"


def test_a_large_run_keeps_the_report_small(run_dir, tmp_path, monkeypatch):
    """Thousands of images: a sample of the points is drawn and the input hashes are cut, each said so."""
    import numpy as np

    from reports import html as report_html
    from reports.plots import MAX_POINTS, metric_distributions

    rng = np.random.default_rng(0)
    n = 10 * MAX_POINTS
    per = pd.DataFrame({"method": ["a"] * n + ["b"] * 50, "psnr": rng.normal(30, 1, n + 50)})
    summary = pd.DataFrame({"method": ["a", "b"], "psnr": [30.0, 30.0]})
    svg = metric_distributions(per, ["a", "b"], ["psnr"], {"psnr": "PSNR"}, summary)
    few = metric_distributions(per[per["method"] == "b"], ["b"], ["psnr"], {"psnr": "PSNR"}, summary)
    assert f"{MAX_POINTS:,} points of each method drawn" in svg and "points of each" not in few
    # Drawn markers: MAX_POINTS for method a (not 20,000) and 50 for b.
    assert MAX_POINTS + 50 <= svg.count("<use ") <= MAX_POINTS + 50 + 20 and len(svg) < 2_000_000

    monkeypatch.setattr(report_html, "MAX_HASH_ROWS", 2)
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    text = Elements(section(report_html.render(report_html.build_context(copy)), "run")).items[0]["text"]
    manifest = json.loads((copy / "manifest.json").read_text())
    shas = list(dict(sorted(manifest["inputs"].items())).values())
    assert shas[0] in text and shas[1] in text and shas[2] not in text
    assert f"The first 2; all {len(shas)} are in manifest.json" in " ".join(text.split())
