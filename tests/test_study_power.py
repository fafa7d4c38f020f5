"""Study planning: the closed form agrees with simulation through the analysis's own test; formulas by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special

from studies.power import (
    Assumptions,
    Design,
    design_effect,
    design_power,
    estimate_iccs,
    half_width,
    logit_random_effects,
    plan,
    power_sentence,
    raters_needed,
    simulate_judgments,
    simulate_power,
)


@pytest.mark.parametrize(
    ("methods", "effect", "trials", "images", "a"),
    [
        # Four methods: Bonferroni over 6 pairs; conservative (independent) rater and image effects.
        (4, 0.15, 40, 60, Assumptions(0.4, 0.05, 0.10, 0.0)),
        # Two methods, tendencies half shared across methods, larger rater clustering.
        (2, 0.15, 30, 40, Assumptions(0.3, 0.10, 0.05, 0.5)),
    ],
)
def test_closed_form_and_simulation_agree_at_80_percent(methods, effect, trials, images, a):
    r = raters_needed(trials, images, methods, a, effect, power=0.8)
    closed = design_power(r, trials, images, methods, effect, a.baseline, a.alpha, a.icc_rater, a.icc_image,
                          a.method_corr)
    assert 0.8 <= closed < 0.83
    sim, se = simulate_power(Design(r, trials, images, methods), effect, a, n_sims=400, seed=3)
    # Monte Carlo SE is ~2 points at 400 simulations; allow ~3 SE.
    assert abs(sim - closed) < 0.065, (sim, se, closed)


def test_simulation_is_not_blind_to_clustering():
    # Ignoring clustering would need far fewer raters; the simulation at that size falls well short of 80%.
    a = Assumptions(0.4, 0.10, 0.15)
    naive = Assumptions(0.4, 0.0, 0.0)
    r_naive = raters_needed(40, 60, 2, naive, 0.15)
    r = raters_needed(40, 60, 2, a, 0.15)
    assert r > 1.5 * r_naive
    sim, _ = simulate_power(Design(r_naive, 40, 60, 2), 0.15, a, n_sims=200, seed=0)
    assert sim < 0.7


def test_design_effect_and_raters_needed_by_hand():
    # m_r = 20, m_i = 10, ICC 0.05 / 0.1: 1 + 19 * 0.05 + 9 * 0.1 = 2.85.
    assert design_effect(20, 10, 0.05, 0.1) == pytest.approx(2.85)
    # Shared tendencies (rho = 0.5) halve the per-cluster counts for a difference.
    assert design_effect(20, 10, 0.05, 0.1, 0.5) == pytest.approx(1 + 9 * 0.05 + 4 * 0.1)
    d = Design(30, 60, 90, 3)
    assert (d.m_rater, d.n_per_method, d.m_image) == (20, 600, pytest.approx(600 / 90))
    a = Assumptions()
    r = raters_needed(60, 90, 3, a, 0.1)
    assert design_power(r, 60, 90, 3, 0.1) >= 0.8 > design_power(r - 1, 60, 90, 3, 0.1)
    # No clustering, two methods: the textbook two-proportion formula (z, not t, for large samples).
    n = (1.959964 + 0.841621) ** 2 * (0.4 * 0.6 + 0.5 * 0.5) / 0.1**2
    r0 = raters_needed(10, 1000, 2, Assumptions(0.4, 0.0, 0.0), 0.1)
    assert abs(r0 * 5 - n) <= 5 + 0.03 * n
    # A CI half-width target: the planned design reaches it, one rater fewer does not.
    r = raters_needed(40, 100, 4, a, target_half_width=0.05)
    assert half_width(Design(r, 40, 100, 4), a) <= 0.05 < half_width(Design(r - 1, 40, 100, 4), a)


def test_too_few_images_and_bad_designs_are_explained():
    a = Assumptions(0.4, 0.05, 0.3)
    assert raters_needed(20, 10, 2, a, 0.05) is None
    table = plan(2, a, effect=0.05, images=(10,), trials_per_rater=(20,))
    assert pd.isna(table.loc[0, "n_raters"])
    with pytest.raises(ValueError, match="at most once per method"):
        Design(10, 200, 50, 2)
    with pytest.raises(ValueError, match="at least the number of methods"):
        Design(10, 3, 50, 4)
    with pytest.raises(ValueError, match="baseline"):
        Assumptions(baseline=1.2)


def test_logit_effects_reproduce_the_iccs():
    p, icc_r, icc_i = 0.35, 0.08, 0.12
    mu, s_r, s_i = logit_random_effects(p, icc_r, icc_i)
    rng = np.random.default_rng(0)
    n = 600
    # A fully crossed 600 raters x 600 images matrix of judgments.
    prob = special.expit(mu + s_r * rng.standard_normal((n, 1)) + s_i * rng.standard_normal((1, n)))
    y = (rng.random((n, n)) < prob).astype(float)
    mean = y.mean()
    pq = mean * (1 - mean)
    # Moment estimates: Var(row means) = sigma_r^2 + (pq - sigma_r^2 - sigma_i^2) / n, likewise for columns.
    vr, vi = y.mean(1).var(), y.mean(0).var()
    sig_r = (vr - (pq - vi) / n) / (1 - 1 / n)
    sig_i = (vi - (pq - vr) / n) / (1 - 1 / n)
    assert mean == pytest.approx(p, abs=0.03)
    assert sig_r / pq == pytest.approx(icc_r, abs=0.025)
    assert sig_i / pq == pytest.approx(icc_i, abs=0.03)


def test_plan_table_and_simulated_judgments():
    a = Assumptions()
    table = plan(4, a, effect=0.1, images=(100,), trials_per_rater=(40, 80))
    assert list(table["trials_per_rater"]) == [40, 80]
    assert (table["power"] >= 0.8).all()
    # More trials per rater need fewer raters.
    assert table.loc[1, "n_raters"] < table.loc[0, "n_raters"]
    # Every column of the plan says something (no stray, always-empty column).
    assert not [c for c in table.columns if c not in ("sim_power", "sim_se") and table[c].isna().all()]
    df = simulate_judgments(Design(10, 20, 30, 2), 0.2, a, np.random.default_rng(0))
    assert len(df) == 10 * 10 * 2 and set(df["method"]) == {"A", "B"}
    assert math.isclose(df.groupby("rater").size().iloc[0], 20)


def test_study_plan_cli(capsys):
    from evalsuite.cli import main

    assert main(["study", "plan", "--methods", "4", "--effect", "0.1", "--images", "100,200",
                 "--trials-per-rater", "80", "--simulate", "0"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["n_raters", "trials_per_rater", "n_images"]
    # The 200-image design needs fewer raters than the 100-image one, as the closed form says.
    r100, r200 = (int(line.split()[0]) for line in lines[1:3])
    assert r100 == raters_needed(80, 100, 4, Assumptions(), 0.1) and r200 < r100
    assert "Bonferroni-corrected over 6 method pairs" in out
    assert f"The cheapest design here is {r200} raters x 80 trials each on 200 images" in out
    assert main(["study", "plan", "--methods", "2", "--half-width", "0.05", "--simulate", "0"]) == 0
    assert "CI half-width of at most 0.05" in capsys.readouterr().out


def test_power_sentence_reports_the_closed_form():
    text = power_sentence(40, 80, 100, 4, effects=(0.1,))
    assert f"{design_power(40, 80, 100, 4, 0.1):.0%} for a difference of 0.1" in text
    assert "Bonferroni over 6 pairs" in text


@pytest.mark.parametrize(("icc_r", "icc_i", "rho"), [(0.05, 0.10, 0.0), (0.10, 0.05, 0.5)])
def test_pilot_estimates_recover_the_simulated_clustering(icc_r, icc_i, rho):
    a = Assumptions(0.4, icc_r, icc_i, rho)
    df = simulate_judgments(Design(200, 60, 150, 2), 0.1, a, np.random.default_rng(1))
    est = estimate_iccs(df["fooled"], df["method"], df["rater"], df["image"])
    assert est.icc_rater == pytest.approx(icc_r, abs=0.02)
    assert est.icc_image == pytest.approx(icc_i, abs=0.025)
    assert est.method_corr == pytest.approx(rho, abs=0.2)
    assert est.baseline == pytest.approx(0.45, abs=0.03)
    with pytest.raises(ValueError, match="at least 2 raters"):
        estimate_iccs([0, 1, 1, 0], ["A"] * 4, ["r"] * 4, ["i1", "i2", "i3", "i4"])


def test_achieved_power_counts_only_method_vs_real_trials():
    """Fool-rate power reads the method-vs-real trials: a duels-only design has none, `both` says so."""
    from studies.extended import achieved_power

    study = {"methods": ["a", "b", "c"], "per_rater": 4, "n_images": 8}
    real = achieved_power({**study, "design": "real"}, 20)
    assert real.startswith("With 20 raters x 12 trials each") and "Duel" not in real
    both = achieved_power({**study, "design": "both"}, 20)
    assert both.startswith(real[:-1]) and both.endswith("Duel trials inform the ranking, not these fool rates.")
    assert achieved_power({**study, "design": "duels"}, 20).startswith("Power not computed: a duels-only design")
