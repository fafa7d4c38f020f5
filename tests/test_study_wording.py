"""The study section's plain-language sentences, parsed and checked against the numbers they quote."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from reports.study_section import comparison_reading, counts_sentence, fool_reading
from studies.analysis import analyze_frame
from studies.extended import extended_analysis

QUALITY = {"good": -0.1, "fair": -0.9, "poor": -2.2}


def _judgments(seed: int = 0, n_raters: int = 14, n_images: int = 12) -> pd.DataFrame:
    """Method-vs-real trials with rater and image effects, and catch trials two careless raters fail."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(0, 0.4, n_raters), rng.normal(0, 0.4, n_images)
    rows = []
    for r in range(n_raters):
        careless = r >= n_raters - 2
        base = {"study_id": 1, "study": "s", "task": 1, "rater_id": f"r{r:02d}", "rater_label": f"R{r}",
                "position": 0, "block": "main", "real_side": "left", "latency_s": 2.0, "answered_at": None}
        for m, q in QUALITY.items():
            for i in range(n_images):
                fooled = rng.random() < (0.5 if careless else expit(q + u[r] + v[i]))
                rows.append(base | {"kind": "real", "method": m, "image_id": f"i{i:02d}",
                                    "choice": "right" if fooled else "left", "chose_real": not fooled})
        for j in range(4):
            ok = rng.random() < 0.3 if careless else True
            rows.append(base | {"kind": "catch", "method": None, "image_id": f"c{j}",
                                "choice": "left" if ok else "right", "chose_real": ok})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def analysis():
    return analyze_frame(_judgments())


def _pct(text: str) -> float:
    return float(text) / 100


def test_fool_reading_quotes_the_top_row_and_concludes_what_its_interval_supports(analysis):
    fr = analysis.fool_rates
    text = fool_reading(fr)
    m = re.match(r"(\w+) fooled raters most: they chose its output over the real image in ([\d.]+)% of (\d+) "
                 r"trials by (\d+) raters \(95% CI ([\d.]+)% to ([\d.]+)%\)", text)
    assert m, text
    row = fr.set_index("method").loc[m.group(1)]
    assert row["fool_rate"] == fr["fool_rate"].max()
    assert _pct(m.group(2)) == pytest.approx(row["fool_rate"], abs=5e-4)
    assert int(m.group(3)) == row["n_judgments"] and int(m.group(4)) == row["n_raters"]
    assert _pct(m.group(5)) == pytest.approx(row["ci_low"], abs=5e-4)
    assert _pct(m.group(6)) == pytest.approx(row["ci_high"], abs=5e-4)
    # The conclusion follows the interval: includes 50% -> "not distinguishable at this sample size".
    if row["ci_low"] <= 0.5 <= row["ci_high"]:
        assert "not distinguishable from the real images at this sample size" in text
    elif (fr["ci_high"] < 0.5).all():
        assert "could tell every method" in text
    assert "indistinguishable from real" not in text


def test_counts_are_after_exclusions_with_the_excluded_shown(analysis):
    text = counts_sentence(analysis)
    m = re.match(r"(\d+) method-vs-real judgments by the (\d+) raters kept; (\d+) of (\d+) raters excluded, "
                 r"with their (\d+) main-block judgments", text)
    assert m, text
    raters = analysis.raters
    out = raters[raters["excluded"]]
    assert len(out) == 2  # the two careless raters fail their catch trials
    assert int(m.group(1)) == analysis.fool_rates["n_judgments"].sum() == (len(raters) - 2) * 12 * 3
    assert int(m.group(2)) == len(raters) - len(out) == analysis.fool_rates["n_raters"].max()
    assert (int(m.group(3)), int(m.group(4))) == (len(out), len(raters))
    assert int(m.group(5)) == out["n_judgments"].sum()


def test_comparisons_are_holm_adjusted_and_read_by_the_adjusted_p(analysis):
    comp = analysis.comparisons
    assert len(comp) == 3 and (comp["p_holm"] >= comp["p_value"] - 1e-15).all()
    for _, r in comp.iterrows():
        text = comparison_reading(r)
        m = re.search(r"\(([+-][\d.]+) points, 95% CI ([+-][\d.]+) to ([+-][\d.]+) points; Holm-adjusted p "
                      r"([<\d.e\- ]+)\)", text)
        assert m, text
        assert float(m.group(1)) == pytest.approx(100 * r["difference"], abs=0.05)
        assert float(m.group(2)) == pytest.approx(100 * r["ci_low"], abs=0.05)
        assert float(m.group(3)) == pytest.approx(100 * r["ci_high"], abs=0.05)
        p = m.group(4).strip()
        assert (p == "< 0.0001" and r["p_holm"] < 1e-4) or float(p) == pytest.approx(r["p_holm"], rel=1e-2)
        if r["p_holm"] < 0.05:
            more = r["method_a"] if r["difference"] > 0 else r["method_b"]
            assert text.startswith(f"{more} fooled raters more")
        else:
            assert text.startswith("not distinguishable at this sample size")


def test_ranking_and_agreement_sentences_match_their_tables(analysis):
    j = _judgments()
    excluded = analysis.raters.loc[analysis.raters["excluded"], "rater_id"].tolist()
    rng = np.random.default_rng(1)
    per_image = pd.DataFrame([{"method": m, "image_id": f"i{i:02d}", "psnr": 30 + 4 * q + rng.normal(0, 0.5)}
                              for m, q in QUALITY.items() for i in range(12)])
    ext = extended_analysis(j, per_image, excluded)
    scores = ext.ranking.scores.set_index("option")
    text = ext.ranking.reading()
    m = re.match(r"(\w+) ranks first; the model says raters would choose it over the real image in (\d+)% of trials",
                 text)
    assert m, text
    top = scores.drop("real")["score"].idxmax()
    assert m.group(1) == top and int(m.group(2)) == round(100 * expit(scores.loc[top, "score"]))
    text = ext.agreement.reading()
    m = re.match(r"On this data (\w+) best predicts the raters: the image it prefers is the one chosen in (\d+)% of "
                 r"(\d+) (.+?) \(95% CI (\d+)%-(\d+)%; 50% = chance\)", text)
    assert m, text
    row = ext.agreement.table.set_index("metric").loc[m.group(1)]
    assert int(m.group(2)) == round(100 * row["agreement"]) and int(m.group(3)) == row["n_trials"]
    assert m.group(4) == row["basis"]
    assert (int(m.group(5)), int(m.group(6))) == (round(100 * row["ci_low"]), round(100 * row["ci_high"]))
    assert ("not distinguishable from a coin" in text) == (row["ci_low"] <= 0.5)
