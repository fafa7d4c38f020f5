"""Fool-rate analysis against hand-computed references on constructed data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from studies.analysis import (
    CatchRule,
    StudyAnalysis,
    analyze,
    analyze_frame,
    wilson_interval,
)
from studies.intervals import contrast, holm, mean_interval


def _row(rater, kind, method, image, chose_real, block="main", task=1):
    return {
        "study_id": 1,
        "study": "s",
        "task": task,
        "rater_id": rater,
        "rater_label": rater.upper(),
        "position": 0,
        "block": block,
        "kind": kind,
        "method": method,
        "image_id": image,
        "real_side": "left",
        "choice": "left" if chose_real else "right",
        "chose_real": chose_real,
        "latency_s": 1.0,
        "answered_at": None,
    }


def _constructed() -> pd.DataFrame:
    """3 raters x 4 images x methods A, B; rater r3 fails its catch trials; practice rows are ignored."""
    rows = []
    # fooled[rater][method] over images i0..i3 (1 = chose the method's output).
    fooled = {
        "r1": {"A": [1, 0, 1, 1], "B": [0, 0, 1, 0]},
        "r2": {"A": [0, 1, 1, 0], "B": [0, 0, 0, 0]},
        "r3": {"A": [1, 1, 1, 1], "B": [1, 1, 1, 1]},
    }
    for r, per in fooled.items():
        for m, ys in per.items():
            for i, y in enumerate(ys):
                rows.append(_row(r, "real", m, f"i{i}", not y))
    for r, catch in {"r1": [1, 1], "r2": [1, 0], "r3": [0, 0]}.items():
        rows += [_row(r, "catch", None, f"c{j}", bool(c)) for j, c in enumerate(catch)]
    rows.append(_row("r1", "catch", None, "p0", False, block="practice"))
    rows.append(_row("r1", "real", "A", "i0", True, block="practice"))
    return pd.DataFrame(rows)


def _wilson_by_hand(k: int, n: int, z: float = stats.norm.ppf(0.975)) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _cgm_by_hand(y, X, g1, g2):
    """Two-way cluster-robust covariance (Cameron, Gelbach, Miller 2011) with CRV1 corrections, by hand."""
    n, k = X.shape
    bread = np.linalg.inv(X.T @ X)
    e = y - X @ (bread @ X.T @ y)

    def one(groups):
        labels = sorted(set(groups))
        meat = np.zeros((k, k))
        for g in labels:
            s = (X[np.array(groups) == g] * e[np.array(groups) == g, None]).sum(0)
            meat += np.outer(s, s)
        c = len(labels) / (len(labels) - 1) * (n - 1) / (n - k)
        return c * bread @ meat @ bread

    both = [f"{a}|{b}" for a, b in zip(g1, g2, strict=True)]
    return one(list(g1)) + one(list(g2)) - one(both)


def test_rater_exclusion_and_fool_rates_match_hand_counts():
    res = analyze_frame(_constructed(), n_resamples=500)
    raters = res.raters.set_index("rater_id")
    assert raters.loc["r1", "catch_accuracy"] == 1.0 and raters.loc["r2", "catch_accuracy"] == 0.5
    assert list(raters["excluded"]) == [False, True, True]  # 0.5 and 0.0 are below 0.8
    assert raters.loc["r1", "n_judgments"] == 10  # 8 real + 2 catch; practice not counted
    fr = res.fool_rates.set_index("method")
    # Only r1 is kept: A fooled 3/4, B 1/4.
    assert fr.loc["A", "fool_rate"] == 0.75 and fr.loc["B", "fool_rate"] == 0.25
    assert fr.loc["A", "n_judgments"] == 4 and fr.loc["A", "n_raters"] == 1
    # One rater kept: clustered by image alone (CRV1, df = 4 images - 1), on the logit scale.
    e = np.array([1, 0, 1, 1]) - 0.75
    v = 4 / 3 * (e**2).sum() / 16
    half = stats.t.ppf(0.975, 3) * math.sqrt(v) / (0.75 * 0.25)
    expit = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    assert fr.loc["A", "ci_low"] == pytest.approx(expit(math.log(3) - half))
    assert fr.loc["A", "ci_high"] == pytest.approx(expit(math.log(3) + half))
    assert any("80%" in n and "2 of 3" in n for n in res.notes)

    kept = analyze_frame(_constructed(), exclude_rule=CatchRule(min_accuracy=0.5), n_resamples=500)
    fr = kept.fool_rates.set_index("method")
    assert fr.loc["A", "fool_rate"] == 5 / 8 and fr.loc["B", "fool_rate"] == 1 / 8
    everyone = analyze_frame(_constructed(), exclude_rule=None, n_resamples=500)
    fr = everyone.fool_rates.set_index("method")
    assert fr.loc["A", "fool_rate"] == 9 / 12 and fr.loc["B", "fool_rate"] == 5 / 12
    assert not everyone.raters["excluded"].any()
    # Per image, all raters: image i0 of A fooled r1 and r3 of 3.
    pi = everyone.per_image.set_index(["method", "image_id"])
    assert (
        pi.loc[("A", "i0"), "fool_rate"] == pytest.approx(2 / 3) and pi.loc[("A", "i0"), "n_judgments"] == 3
    )
    assert pi.loc[("B", "i3"), "fool_rate"] == pytest.approx(1 / 3)
    ext = everyone.extremes(k=1)
    assert set(ext["which"]) == {"best", "worst"}
    assert ext[(ext["method"] == "A") & (ext["which"] == "best")]["image_id"].item() == "i2"  # 3/3


def _df_by_hand(parts, n_r, n_i):
    """Satterthwaite df of V_r + V_i - V_ri, clamped to [(s + min(R, I) - 1) / 2, max(R, I) - 1]."""
    v = parts[0] + parts[1] - parts[2]
    satt = v**2 / (parts[0] ** 2 / (n_r - 1) + parts[1] ** 2 / (n_i - 1) + parts[2] ** 2 / (len(parts[3]) - 1))
    s = 1 / (1 / (n_r - 1) + 1 / (n_i - 1))
    return min(max(satt, (s + min(n_r, n_i) - 1) / 2), max(n_r, n_i) - 1)


def test_intervals_and_tests_match_two_way_cluster_formulas_by_hand():
    from statsmodels.api import OLS
    from statsmodels.stats.sandwich_covariance import cov_cluster_2groups

    df = _constructed()
    real = df[(df["kind"] == "real") & (df["block"] == "main")]
    y = (~real["chose_real"]).to_numpy(float)
    r, i, m = real["rater_id"].to_numpy(), real["image_id"].to_numpy(), real["method"].to_numpy()
    # The fool rate of A, all raters: CGM variance by hand, the same as statsmodels', then the logit interval.
    a = m == "A"
    ones = np.ones((a.sum(), 1))
    v = _cgm_by_hand(y[a], ones, r[a], i[a])[0, 0]
    assert v == pytest.approx(cov_cluster_2groups(OLS(y[a], ones).fit(), np.unique(r[a], return_inverse=True)[1],
                                                  np.unique(i[a], return_inverse=True)[1])[0][0, 0])
    cells = [f"{x}|{z}" for x, z in zip(r[a], i[a], strict=True)]
    parts = [_cgm_by_hand(y[a], ones, g, g)[0, 0] / 1.0 for g in (list(r[a]), list(i[a]), cells)]
    # _cgm_by_hand(g, g) = one(g) + one(g) - one(g) = one(g): the one-way parts.
    dof = _df_by_hand([*parts, set(cells)], 3, 4)
    ci = mean_interval(y[a], r[a], i[a], null=0.5)
    p = 9 / 12
    se = math.sqrt(v) / (p * (1 - p))
    q = stats.t.ppf(0.975, dof)
    assert ci.estimate == pytest.approx(p) and ci.se == pytest.approx(se) and ci.df == pytest.approx(dof)
    assert ci.low == pytest.approx(1 / (1 + math.exp(-(math.log(p / (1 - p)) - q * se))))
    assert ci.high == pytest.approx(1 / (1 + math.exp(-(math.log(p / (1 - p)) + q * se))))
    assert ci.p_value == pytest.approx(2 * stats.t.sf(math.log(p / (1 - p)) / se, dof))
    # Between methods: the slope of y ~ 1 + [method == A] is the difference of fool rates.
    X = np.column_stack([np.ones(len(y)), a.astype(float)])
    t = contrast(y, a.astype(float), r, i)
    v = _cgm_by_hand(y, X, r, i)[1, 1]
    assert t.estimate == pytest.approx(9 / 12 - 5 / 12) and t.se == pytest.approx(math.sqrt(v))
    assert t.low == pytest.approx(t.estimate - stats.t.ppf(0.975, t.df) * t.se)
    assert 1 / (1 / 2 + 1 / 3) <= t.df <= 3  # a difference: the lower end is s itself
    res = analyze_frame(df, exclude_rule=None, n_resamples=200)
    comp = res.comparisons.iloc[0]
    assert (comp["method_a"], comp["method_b"]) == ("A", "B")
    assert comp["difference"] == pytest.approx(4 / 12) and comp["p_value"] == pytest.approx(t.p_value)
    assert comp["p_holm"] == pytest.approx(t.p_value)  # one pair: nothing to adjust
    assert comp["ci_low"] == pytest.approx(t.low) and "Holm" in comp["test"]
    fr = res.fool_rates.set_index("method")
    assert fr.loc["A", "ci_low"] == pytest.approx(ci.low) and fr.loc["A", "p_value_vs_50"] == pytest.approx(ci.p_value)


def test_holm_by_hand_and_in_the_comparisons():
    p = [0.01, 0.04, 0.03, np.nan]
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1, then running maximum: 0.03, 0.06, 0.06.
    assert np.allclose(holm(p)[:3], [0.03, 0.06, 0.06]) and np.isnan(holm(p)[3])
    df = _constructed()
    extra = df[(df["kind"] == "real") & (df["method"] == "B")].assign(method="C")
    extra["chose_real"] = ~extra["chose_real"]
    res = analyze_frame(pd.concat([df, extra]), exclude_rule=None)
    c = res.comparisons
    assert len(c) == 3 and np.allclose(c["p_holm"], holm(c["p_value"])) and (c["p_holm"] >= c["p_value"]).all()


def test_wilson_matches_formula_and_edges():
    for k, n in [(0, 10), (10, 10), (37, 100), (1, 3)]:
        assert wilson_interval(k, n) == pytest.approx(_wilson_by_hand(k, n), abs=1e-12)
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_interval_widens_with_rater_effects_and_stays_inside_0_1():
    rng = np.random.default_rng(0)
    # 10 raters with very different tendencies, 12 images: judgments are far from independent.
    raters = np.repeat(np.arange(10), 12)
    images = np.tile(np.arange(12), 10)
    p_rater = np.linspace(0.05, 0.95, 10)[raters]
    y = (rng.random(raters.size) < p_rater).astype(float)
    ci = mean_interval(y, raters, images)
    w_lo, w_hi = wilson_interval(int(y.sum()), y.size)
    assert (ci.high - ci.low) > 1.8 * (w_hi - w_lo)
    # Nobody fooled: no variance to cluster, the Wilson interval of the trials (never outside [0, 1]).
    flat = mean_interval(np.zeros(40), np.repeat(np.arange(4), 10), np.tile(np.arange(10), 4))
    assert flat.low == 0.0 and flat.high == pytest.approx(wilson_interval(0, 40)[1])


def test_save_load_round_trip(tmp_path):
    res = analyze_frame(
        _constructed(),
        studies=[
            {
                "id": 1,
                "name": "s",
                "task": 1,
                "exposure_s": 3.0,
                "n_images": 4,
                "per_rater": 4,
                "run_dir": "/r",
                "methods": ["A", "B"],
            }
        ],
        n_resamples=300,
    )
    res.save(tmp_path / "out")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "fool_rates.csv",
        "per_image.csv",
        "raters.csv",
        "comparisons.csv",
        "study.json",
    }
    back = StudyAnalysis.load(tmp_path / "out")
    for name in ("fool_rates", "per_image", "raters", "comparisons"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(res, name), check_dtype=False)
    assert back.notes == res.notes and back.study["exposure_s"] == 3.0 and back.study["tasks"] == [1]
    with pytest.raises(FileNotFoundError, match="study analyze"):
        StudyAnalysis.load(tmp_path)


def test_analyze_reads_a_real_database(tmp_path):
    from study_support import make_run_folder

    from studies.service import create_study, invite_raters
    from studies.store import Store

    run = make_run_folder(tmp_path / "run", n_images=3, size=16)
    db = str(tmp_path / "s.db")
    create_study(run, db, task=2, methods=("bicubic", "nearest"), per_rater=3, n_catch=2, n_practice=1)
    tokens = [t for _, t in invite_raters(db, 2)]
    store = Store(db, create=False)
    expected = {"bicubic": [], "nearest": []}
    for k, token in enumerate(tokens):
        rater = store.rater_by_token(token)
        a = store.assignments_frame()
        mine = a[a["rater_id"] == rater.public_id].set_index("position")
        for t in store.trials(rater.id):
            row = mine.loc[t.position]
            # Rater 0 always picks the real image, rater 1 always the other one; catch trials answered right.
            pick_real = row["kind"] == "catch" or k == 0
            other = "right" if row["real_side"] == "left" else "left"
            store.submit(rater.id, t.assignment_id, row["real_side"] if pick_real else other)
            if row["block"] == "main" and row["kind"] == "real":
                expected[row["method"]].append(0.0 if pick_real else 1.0)
    store.dispose()
    res = analyze(db, n_resamples=200)
    fr = res.fool_rates.set_index("method")
    for m, ys in expected.items():
        assert fr.loc[m, "fool_rate"] == pytest.approx(np.mean(ys)) and fr.loc[m, "n_judgments"] == len(ys)
    assert (fr["task"] == 2).all() and res.study["task"] == 2 and res.study["per_rater"] == 3
    assert len(res.raters) == 2 and not res.raters["excluded"].any()


def test_every_rater_excluded_reports_all_raters_labelled():
    df = _constructed()
    # Catch trials all failed: every rater is below any positive accuracy threshold.
    df.loc[df["kind"] == "catch", "chose_real"] = False
    res = analyze_frame(df, n_resamples=200)
    assert res.all_excluded and res.raters["excluded"].all()
    everyone = analyze_frame(df, exclude_rule=None, n_resamples=200)
    pd.testing.assert_series_equal(res.fool_rates["fool_rate"], everyone.fool_rates["fool_rate"])
    assert (res.fool_rates["exclusion"].str.startswith("none: every rater failed")).all()
    assert (everyone.fool_rates["exclusion"] == "none").all() and not everyone.all_excluded
    assert any("ALL 3 rater(s) fail" in n for n in res.notes)
    # Some raters kept: the usual label.
    assert (analyze_frame(_constructed(), n_resamples=200).fool_rates["exclusion"] == "catch rule").all()


def test_report_and_analyze_share_the_exclusion_option(tmp_path):
    import argparse

    from reports.study import load_study
    from studies.cli import add_exclusion_arguments, exclusion_rule

    parser = argparse.ArgumentParser()
    add_exclusion_arguments(parser)
    # The options as `analyze_frame` reads them (tests/test_study_quality.py checks what each means).
    assert analyze_frame(_constructed(), exclude_rule=exclusion_rule(parser.parse_args([])),
                         n_resamples=50).raters["excluded"].sum() == 2
    half = exclusion_rule(parser.parse_args(["--min-catch-accuracy", "0.5"]))
    assert analyze_frame(_constructed(), exclude_rule=half, n_resamples=50).raters["excluded"].sum() == 1
    assert exclusion_rule(parser.parse_args(["--no-exclusion"])) is None
    # An analysis folder keeps its own rule: asking for another one is an error that says what to pass.
    analyze_frame(_constructed(), n_resamples=100).save(tmp_path / "a")
    assert len(load_study(tmp_path / "a").fool_rates) == 2
    with pytest.raises(ValueError, match="pass the study database"):
        load_study(tmp_path / "a", None, explicit=True)
