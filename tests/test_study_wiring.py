"""End to end: `study create` on a tiny run, raters with a known preference answering through the display
protocol, then `study analyze` and `report --study` show ranking, agreement, reliability, power, exclusions."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from study_support import answer_through_displays, make_run_folder

from evalsuite.cli import main
from studies.store import Store

FOOL = {"alpha": 0.45, "beta": 0.22, "gamma": 0.03}  # known order: alpha > beta > gamma
N_IMAGES, N_GOOD = 6, 8


def _run(tmp_path):
    """A run folder with three methods and a per_image.csv: psnr follows the raters, lpips is noise."""
    run = make_run_folder(tmp_path / "run", n_images=N_IMAGES, size=16, methods=tuple(FOOL))
    rng = np.random.default_rng(3)
    pd.DataFrame([
        {"method": m, "image_id": f"img{k:03d}", "psnr": 20 + 30 * p + rng.normal(0, 0.5), "lpips": rng.random()}
        for m, p in FOOL.items() for k in range(N_IMAGES)
    ]).to_csv(run / "per_image.csv", index=False)
    return run


def _answer(db: str, tokens: list[str]) -> None:
    """Good raters are fooled with the method's known rate and pass catch trials; the last one always says left."""
    rng = np.random.default_rng(0)
    with Store(db, create=False) as store:
        plan = store.assignments_frame().set_index(["rater_id", "position"])
        for k, token in enumerate(tokens):
            rater = store.rater_by_token(token)

            def choose(t, rater=rater, streaker=k == len(tokens) - 1):
                row = plan.loc[(rater.public_id, t.position)]
                if streaker:
                    return "left"
                fake = "right" if row["real_side"] == "left" else "left"
                p = 0.0 if row["kind"] == "catch" else FOOL[row["method"]]
                return fake if rng.random() < p else row["real_side"]

            answer_through_displays(store, rater.id, choose)


def test_create_answer_analyze_and_report(tmp_path, capsys):
    run, db = _run(tmp_path), str(tmp_path / "s.db")
    # Answers through the display protocol take milliseconds: the stored policy turns the time rule off, and
    # a short side-streak limit catches the streaker (the defaults would flag every rater as too fast).
    assert main(["study", "create", "--run", str(run), "--methods", ",".join(FOOL), "--per-rater", str(N_IMAGES),
                 "--catch", "2", "--practice", "0", "--db", db, "--min-rt", "0", "--max-side-streak", "8",
                 "--raters", "40"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"power: With 40 raters x 18 trials each x 6 images, .* is \d+% for a difference of 0.05", out)
    assert "same side chosen more than 8 times" in out and "response time" not in out
    with Store(db, create=False) as store:  # the policy is in the study's config before any judgment
        assert store.study(1)["quality"]["max_side_streak"] == 8 and store.study(1)["quality"]["min_median_rt_s"] == 0
    assert main(["study", "invite", "-n", str(N_GOOD + 1), "--db", db]) == 0
    tokens = [line.split("\t")[1].split("token=")[1] for line in capsys.readouterr().out.splitlines()]
    _answer(db, tokens)

    assert main(["study", "analyze", "--db", db, "--resamples", "200", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    ranking = out.split("Bradley-Terry ranking, task 1")[1].split("reading:")[0]
    order = [line.split()[0] for line in ranking.splitlines()[2:] if line.strip()]
    assert order == ["real", "alpha", "beta", "gamma"], ranking
    assert re.search(r"side_streak\s+1 flagged", out) and "too_fast" not in out
    assert "win matrix" in out and "metric agreement with the raters" in out and "krippendorff_alpha" in out
    assert "verdict: psnr predicts raters best" in out
    assert re.search(r"power: With 8 raters x 18 trials", out)  # the kept raters
    for name in ("fool_rates.csv", "raters.csv", "ranking.csv", "win_matrix.csv", "agreement.csv",
                 "reliability.csv", "ranking.svg", "study.json"):
        assert (tmp_path / "a" / name).exists(), name
    assert pd.read_csv(tmp_path / "a" / "raters.csv")["excluded_by"].fillna("").str.contains("side_streak").sum() == 1

    # The report from the database and from the saved folder: every part of the section, with its sentence.
    for source in (db, str(tmp_path / "a")):
        html_path = tmp_path / "r.html"
        assert main(["report", str(run), "--study", source, "-o", str(html_path)]) == 0
        html = html_path.read_text()
        st = html[html.index('<section id="study">'):]
        assert re.search(r'id="plot-ranking-1">\s*<svg', st) and re.search(r'id="plot-win-1">\s*<svg', st)
        ranked = re.findall(r'<tr data-option="([^"]+)">', st)
        assert ranked == ["real", "alpha", "beta", "gamma"]
        assert '<tr data-metric="psnr">' in st and "psnr predicts raters best" in st
        assert "Krippendorff&#39;s alpha" in st and "alpha ranks first" in st
        assert "With 8 raters x 18 trials" in st
        assert "1 of 9 raters were excluded" in st and "same side in a row" in st
        assert "fooled raters most" in st and "raters kept; 1 of 9 raters excluded" in st
    capsys.readouterr()
    assert main(["study", "analyze", "--db", db, "--run", str(tmp_path)]) == 2
    assert "per_image.csv" in capsys.readouterr().err


def test_ranking_reads_method_vs_method_trials():
    """A judgments frame with method-vs-method rows (option_a/option_b/winner) next to method-vs-real rows."""
    from studies.extended import extended_analysis

    rng = np.random.default_rng(1)
    strength = {"alpha": 1.0, "beta": 0.0, "gamma": -1.0, "real": 1.5}
    rows = []
    for r in range(10):
        for img in range(6):
            for a, b in (("alpha", "beta"), ("beta", "gamma"), ("alpha", "gamma"), ("alpha", "real"),
                         ("gamma", "real")):
                win = a if rng.random() < 1 / (1 + np.exp(strength[b] - strength[a])) else b
                base = {"rater_id": f"r{r}", "image_id": f"i{img}", "block": "main", "task": 1}
                if b == "real":
                    rows.append(base | {"kind": "real", "method": a, "chose_real": win == "real",
                                        "option_a": None, "option_b": None, "winner": None})
                else:
                    rows.append(base | {"kind": "duel", "method": a, "chose_real": False,
                                        "option_a": a, "option_b": b, "winner": win})
    frame = pd.DataFrame(rows)
    # The same trials with every ranked row carrying its options (real trials as (method, real)) and check
    # trials carrying none, as a store with duels writes them.
    filled = frame.copy()
    real = filled["kind"] == "real"
    filled.loc[real, "option_a"] = filled.loc[real, "method"]
    filled.loc[real, "option_b"] = "real"
    filled.loc[real, "winner"] = np.where(filled.loc[real, "chose_real"], "real", filled.loc[real, "method"])
    checks = pd.DataFrame([{"rater_id": f"r{r}", "image_id": "i0", "block": "main", "task": 1, "kind": kind,
                            "method": None, "chose_real": True, "option_a": None, "option_b": None, "winner": None}
                           for r in range(10) for kind in ("catch", "attention")])
    for judgments in (frame, pd.concat([filled, checks], ignore_index=True)):
        ext = extended_analysis(judgments, n_resamples=50)
        assert ext.ranking.scores["option"].tolist() == ["real", "alpha", "beta", "gamma"]
        assert ext.ranking.totals.loc["alpha", "beta"] == 60 and ext.ranking.totals.loc["alpha", "real"] == 60
