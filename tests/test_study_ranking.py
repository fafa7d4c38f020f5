"""Bradley-Terry ranking: recovery of known strengths, ML against a direct likelihood fit, clear errors."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import optimize
from scipy.special import expit, log_expit

from studies.ranking import bradley_terry, fit_bradley_terry, pairs_from_judgments, ranking_plot, win_matrix_plot

TRUE = {"real": 0.0, "sr3": -0.3, "regression": -1.0, "bicubic": -2.0}


def simulate_pairs(
    strengths: dict[str, float],
    n_raters: int = 12,
    n_images: int = 20,
    per_pair: int = 6,
    seed: int = 0,
    rater_sd: float = 0.0,
) -> pd.DataFrame:
    """Raters choose between every pair of options on `per_pair` images each, by Bradley-Terry on `strengths`."""
    rng = np.random.default_rng(seed)
    names = list(strengths)
    rows = []
    for r in range(n_raters):
        # A rater's own taste: a small shift of each option's strength (0 = textbook Bradley-Terry).
        taste = {n: strengths[n] + rng.normal(0, rater_sd) for n in names}
        for a, b in itertools.combinations(names, 2):
            for img in rng.choice(n_images, per_pair, replace=False):
                a_wins = rng.random() < expit(taste[a] - taste[b])
                rows.append({"rater": f"r{r}", "image_id": f"i{img}", "option_a": a, "option_b": b,
                             "winner": a if a_wins else b})
    return pd.DataFrame(rows)


def test_known_order_recovered_and_true_values_in_the_cis():
    covered, checks = 0, 0
    for seed in range(4):
        ranking = bradley_terry(simulate_pairs(TRUE, seed=seed), n_resamples=120, seed=seed)
        s = ranking.scores.set_index("option")
        # The order is the true one (real > sr3 > regression > bicubic) and real is the 0 reference.
        assert list(ranking.scores["option"]) == ["real", "sr3", "regression", "bicubic"]
        assert s.loc["real", "score"] == 0.0
        for name, value in TRUE.items():
            if name == "real":
                continue
            checks += 1
            covered += s.loc[name, "ci_low"] <= value <= s.loc[name, "ci_high"]
            assert abs(s.loc[name, "score"] - value) < 0.5
    # 95% intervals: nearly all of 12 true values covered (a broken bootstrap covers far fewer).
    assert covered >= 10, f"{covered}/{checks} true values inside the CIs"


def test_order_recovered_when_raters_differ_in_taste():
    # Each rater's strengths are shifted at random (SD 0.4): the population order still comes out.
    ranking = bradley_terry(simulate_pairs(TRUE, n_raters=30, seed=7, rater_sd=0.4), n_resamples=30)
    assert list(ranking.scores["option"]) == ["real", "sr3", "regression", "bicubic"]


def test_cis_shrink_with_more_raters():
    small = bradley_terry(simulate_pairs(TRUE, n_raters=6, seed=1), n_resamples=100).scores.set_index("option")
    big = bradley_terry(simulate_pairs(TRUE, n_raters=40, seed=1), n_resamples=100).scores.set_index("option")
    w_small = (small["ci_high"] - small["ci_low"]).drop("real")
    w_big = (big["ci_high"] - big["ci_low"]).drop("real")
    assert (w_big < w_small).all()


def test_fit_is_the_maximum_likelihood_estimate():
    pairs = simulate_pairs(TRUE, n_raters=5, seed=3)
    names = list(TRUE)
    idx = {n: i for i, n in enumerate(names)}
    w = pairs["winner"].map(idx).to_numpy()
    lose = np.where(pairs["winner"] == pairs["option_a"], pairs["option_b"], pairs["option_a"])
    lose = pd.Series(lose).map(idx).to_numpy()
    comp = np.zeros((4, 4))
    np.add.at(comp, (w, lose), 1)

    # Direct fit: minimize the negative log-likelihood -sum log sigmoid(theta_w - theta_l), theta_0 = 0.
    def nll(free):
        theta = np.concatenate([[0.0], free])
        return -log_expit(theta[w] - theta[lose]).sum()

    direct = optimize.minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-9}).x
    ours = fit_bradley_terry(comp)
    np.testing.assert_allclose(ours[1:] - ours[0], direct, atol=1e-4)
    # And bradley_terry reports exactly that fit, relative to "real".
    s = bradley_terry(pairs, options=names, n_resamples=20).scores.set_index("option")
    np.testing.assert_allclose(s.loc[names[1:], "score"].to_numpy(), direct, atol=1e-4)


def test_win_matrix_counts():
    pairs = pd.DataFrame(
        [("r1", "i1", "A", "real", "A"), ("r1", "i2", "A", "real", "real"), ("r2", "i1", "A", "real", "real"),
         ("r2", "i1", "A", "B", "B"), ("r1", "i2", "B", "real", "real"), ("r2", "i2", "real", "B", "B")],
        columns=["rater", "image_id", "option_a", "option_b", "winner"],
    )
    r = bradley_terry(pairs, n_resamples=20)
    assert r.wins.loc["A", "real"] == 1 and r.wins.loc["real", "A"] == 2 and r.totals.loc["A", "real"] == 3
    assert r.win_fraction.loc["real", "A"] == pytest.approx(2 / 3)
    assert r.win_table().loc["B", "A"] == "1.00 (1/1)"
    assert r.win_table().loc["A", "A"] == "-"


def test_never_compared_method_gets_nan_with_a_reason():
    pairs = simulate_pairs({"real": 0.0, "A": -0.5, "B": -1.0}, n_raters=4, seed=0)
    r = bradley_terry(pairs, options=["real", "A", "B", "C"], n_resamples=20)
    c = r.scores.set_index("option").loc["C"]
    assert np.isnan(c["score"]) and "never compared" in c["note"]
    with pytest.raises(ValueError, match="not in options"):
        bradley_terry(pairs, options=["real", "A"])


def test_disconnected_comparisons_are_refused():
    pairs = pd.DataFrame(
        [("r1", "i1", "A", "B", "A"), ("r1", "i1", "A", "B", "B"), ("r1", "i2", "C", "D", "C"),
         ("r1", "i2", "C", "D", "D")],
        columns=["rater", "image_id", "option_a", "option_b", "winner"],
    )
    with pytest.raises(ValueError, match="no trial between them"):
        bradley_terry(pairs, reference=None)


def test_separable_choices_are_regularized_with_a_note():
    pairs = pd.DataFrame(
        [(f"r{k}", f"i{k}", "A", "real", "real") for k in range(6)]
        + [(f"r{k}", f"i{k}", "B", "real", "real" if k < 3 else "B") for k in range(6)],
        columns=["rater", "image_id", "option_a", "option_b", "winner"],
    )
    r = bradley_terry(pairs, n_resamples=50)
    s = r.scores.set_index("option")
    assert np.isfinite(s.loc["A", "score"]) and s.loc["A", "score"] < s.loc["B", "score"] < 0
    assert any("separable" in n for n in r.notes)


def test_pairs_from_judgments_and_plot():
    rows = []
    for r, m, img, chose_real, kind, block in [
        ("r1", "A", "i1", False, "real", "main"), ("r1", "A", "i2", True, "real", "main"),
        ("r1", None, "c1", True, "catch", "main"), ("r1", "A", "i3", False, "real", "practice"),
        ("r2", "A", "i1", True, "real", "main"),
    ]:
        rows.append({"rater_id": r, "method": m, "image_id": img, "chose_real": chose_real, "kind": kind,
                     "block": block, "task": 1})
    pairs = pairs_from_judgments(pd.DataFrame(rows), excluded=["r2"])
    assert pairs[["option_a", "option_b", "winner"]].values.tolist() == [["A", "real", "A"], ["A", "real", "real"]]
    with pytest.raises(ValueError, match="lacks columns"):
        pairs_from_judgments(pd.DataFrame({"x": [1]}))
    # Duels without option columns: (method, method_b), won by `method` when its side was chosen.
    duels = pd.DataFrame([
        {"rater_id": "r1", "image_id": "i1", "kind": "duel", "method": "A", "method_b": "B", "chose_real": True,
         "block": "main"},
        {"rater_id": "r1", "image_id": "i2", "kind": "duel", "method": "A", "method_b": "B", "chose_real": False,
         "block": "main"},
        {"rater_id": "r1", "image_id": "i3", "kind": "real", "method": "B", "method_b": None, "chose_real": False,
         "block": "main"},
        {"rater_id": "r1", "image_id": "i4", "kind": "attention", "method": None, "method_b": None,
         "chose_real": True, "block": "main"},
    ])
    assert pairs_from_judgments(duels)[["option_a", "option_b", "winner"]].values.tolist() == [
        ["A", "B", "A"], ["A", "B", "B"], ["B", "real", "B"]]
    ranking = bradley_terry(simulate_pairs(TRUE, n_raters=4), n_resamples=20)
    svg = ranking_plot(ranking)
    assert svg.startswith("<svg") and "bicubic" in svg and "real" in svg
    heat = win_matrix_plot(ranking)
    n = int(ranking.totals.loc["sr3", "bicubic"])
    assert heat.startswith("<svg") and f"{int(ranking.wins.loc['sr3', 'bicubic'])}/{n}" in heat
