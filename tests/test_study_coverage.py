"""The coverage benchmark's small grid: every interval the report shows covers the simulated truth ~95%."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import study_coverage as sc  # noqa: E402

from studies.intervals import bt_intervals, bt_parts, crossed_groups, mean_interval  # noqa: E402
from studies.ranking import bradley_terry, fit_bradley_terry  # noqa: E402


def test_small_grid_covers_within_target():
    found = sc.run(quick=True, reps=400, seed=0)
    assert set(found) == {"fool rate", "difference of fool rates", "Bradley-Terry score (Task 1)",
                          "Bradley-Terry scores (duels, worst option)", "metric agreement (duels)"}
    for name, rows in found.items():
        for cell, cov in rows:
            # 400 seeded replications: MC standard error 1.1%; Wilson-like intervals cover ~80% here.
            assert 0.92 <= cov <= 0.985, (name, cell.label(), cov)


def test_true_fool_rate_is_the_population_average():
    # E[expit(mu + sd Z)] by quadrature equals a large Monte Carlo average, and differs from expit(mu).
    mu = sc.mu_for(0.2, 0.85)
    z = np.random.default_rng(0).normal(size=2_000_000)
    assert special.expit(mu + 0.85 * z).mean() == pytest.approx(0.2, abs=1e-3)
    assert special.expit(mu) < 0.19


def test_vectorised_fit_equals_choix_and_sandwich_matches_fool_rate_interval():
    rng = np.random.default_rng(3)
    wins = rng.integers(1, 30, (1, 4, 4)).astype(float)
    wins[0][np.eye(4, dtype=bool)] = 0
    theta = sc.fit_bt(wins, 0)[0]
    ref = fit_bradley_terry(wins[0])
    assert np.allclose(theta - theta.mean(), ref, atol=1e-6)
    # Method vs real only: the BT score is logit(fool rate) and its sandwich se the fool rate's logit-scale se.
    r, i = np.repeat(np.arange(8), 9), np.tile(np.arange(9), 8)
    y = (rng.random(r.size) < special.expit(-0.8 + rng.normal(0, 0.5, 8)[r])).astype(int)
    pairs = pd.DataFrame({"rater": r.astype(str), "image_id": i.astype(str), "option_a": "m", "option_b": "real",
                          "winner": np.where(y == 1, "m", "real")})
    row = bradley_terry(pairs).scores.set_index("option").loc["m"]
    ci = mean_interval(y, r, i)
    assert row["score"] == pytest.approx(special.logit(y.mean()), abs=1e-6)
    groups = crossed_groups(r, i)
    se, df, q = bt_intervals(bt_parts(np.array([[0.0, row["score"]]]), y[None, :], 1 - y[None, :], groups, 0),
                             groups, centre=False)
    assert se[0, 1] == pytest.approx(ci.se, rel=1e-6) and df[0, 1] == pytest.approx(ci.df)
    assert row["ci_low"] == pytest.approx(row["score"] - q[0, 1] * se[0, 1], rel=1e-6)
    assert special.expit(row["ci_low"]) == pytest.approx(ci.low, rel=1e-6)
