"""Metric-human agreement and inter-rater reliability on synthetic judgments with known structure."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from studies.agreement import (
    krippendorff_alpha,
    metric_agreement,
    metric_direction,
    metric_needs_reference,
    reliability,
    reliability_reading,
    split_half,
)
from studies.ranking import bradley_terry

STRENGTH = {"m1": -0.2, "m2": -0.7, "m3": -1.3, "m4": -2.0}


def _world(seed: int = 0, n_images: int = 30, n_raters: int = 16, scale: float = 3.0, method_pairs: bool = True):
    """Per-image quality q[m, i] drives the raters; metrics see q with more or less noise."""
    rng = np.random.default_rng(seed)
    images = [f"i{k}" for k in range(n_images)]
    q = {(m, i): s + rng.normal(0, 0.8) for m, s in STRENGTH.items() for i in images}
    q.update({("real", i): 0.0 for i in images})
    rows = []
    options = list(STRENGTH) + ["real"]
    for r in range(n_raters):
        for a, b in itertools.combinations(options, 2):
            if not method_pairs and "real" not in (a, b):
                continue
            for i in rng.choice(images, 8, replace=False):
                a_wins = rng.random() < expit(scale * (q[(a, i)] - q[(b, i)]))
                rows.append((f"r{r}", i, a, b, a if a_wins else b))
    pairs = pd.DataFrame(rows, columns=["rater", "image_id", "option_a", "option_b", "winner"])
    per = []
    for (m, i), v in q.items():
        per.append({
            "method": "reference (HR)" if m == "real" else m,  # the run's label of the ground truth
            "image_id": i,
            "psnr": None if m == "real" else 30 + 3 * v + rng.normal(0, 0.3),  # close to the truth
            "lpips": None if m == "real" else 0.3 - 0.05 * v + rng.normal(0, 0.05),  # noisier, lower is better
            "ssim": None if m == "real" else rng.uniform(0.5, 0.9),  # unrelated to quality
            # No direction: 0 dB (the ground truth's own value) is ideal; a worse output is blurrier (negative)
            # or noisier (positive), so only the distance to 0 carries the quality.
            "detail": rng.choice([-1.0, 1.0]) * 3 * abs(v) + rng.normal(0, 0.1),
            "wiggle": rng.normal(),  # an unknown column: no direction, no reference value
            "niqe": 4.0 - v + rng.normal(0, 0.2),  # no-reference: scores the real image too
        })
    return pairs, pd.DataFrame(per)


def test_directions_and_reference_kinds_come_from_one_place():
    assert metric_direction("psnr") is True and metric_direction("lpips") is False
    assert metric_direction("detail") is None
    assert metric_direction("niqe") is False
    assert metric_needs_reference("psnr") and not metric_needs_reference("niqe")


def test_best_metric_is_found_and_unrelated_metric_is_at_chance():
    pairs, per_image = _world()
    ranking = bradley_terry(pairs, n_resamples=50)
    result = metric_agreement(pairs, per_image, ranking, n_resamples=300)
    table = result.table
    t = table[table["basis"] != "trials with the real image"].set_index("metric")
    assert t.loc["psnr", "agreement"] > t.loc["lpips", "agreement"] > t.loc["ssim", "agreement"]
    assert t.loc["psnr", "ci_low"] > 0.7
    assert t.loc["ssim", "ci_low"] < 0.5 < t.loc["ssim", "ci_high"]
    # Every metric is compared on the method-vs-method trials; full-reference PSNR skips the real image...
    n_real = int(((pairs["option_a"] == "real") | (pairs["option_b"] == "real")).sum())
    assert t.loc["psnr", "n_trials"] == t.loc["niqe", "n_trials"] == len(pairs) - n_real
    assert t.loc["psnr", "basis"] == "method-vs-method trials"
    assert "cannot score the ground truth" in t.loc["psnr", "note"]
    # ...while NIQE (no-reference) also gets a row on the trials with the real image.
    extra = table[table["basis"] == "trials with the real image"].set_index("metric")
    assert list(extra.index) == ["niqe"] and extra.loc["niqe", "n_trials"] == n_real
    # Method means order the methods as people do: rho = +1 for PSNR and (lower is better) LPIPS.
    assert t.loc["psnr", "spearman_rho"] == pytest.approx(1.0)
    assert t.loc["lpips", "spearman_rho"] == pytest.approx(1.0)
    # detail enters by its distance to the ground truth's 0 dB: it predicts raters although its sign is random.
    assert t.loc["detail", "agreement"] > 0.7 and t.loc["detail", "better"] == "closer to 0"
    assert "distance to the ground truth's own value" in t.loc["detail", "note"]
    # An unknown column without a direction is listed, with the reason, not compared.
    assert np.isnan(t.loc["wiggle", "agreement"]) and "no direction" in t.loc["wiggle", "note"]
    reading = result.reading()
    assert reading.startswith("On this data") and ("psnr" in reading or "niqe" in reading)


def test_agreement_counts_by_hand():
    pairs = pd.DataFrame(
        [("r1", "i1", "A", "B", "A"), ("r2", "i1", "A", "B", "B"), ("r1", "i2", "A", "B", "A"),
         ("r2", "i2", "B", "A", "A")],
        columns=["rater", "image_id", "option_a", "option_b", "winner"],
    )
    per_image = pd.DataFrame({"method": ["A", "B", "A", "B"], "image_id": ["i1", "i1", "i2", "i2"],
                              "psnr": [30.0, 28.0, 25.0, 25.0]})
    t = metric_agreement(pairs, per_image, n_resamples=50).table.set_index("metric")
    # i1: PSNR prefers A; raters chose A then B -> 1, 0. i2: tie -> 1/2 each. Mean 0.5, 1 tie image.
    assert t.loc["psnr", "agreement"] == pytest.approx(0.5)
    assert t.loc["psnr", "n_ties"] == 2 and t.loc["psnr", "n_trials"] == 4
    with pytest.raises(ValueError, match="not columns of per_image"):
        metric_agreement(pairs, per_image, metrics=["lpips"])


def test_task1_only_uses_derived_image_pairs():
    pairs, per_image = _world(seed=1, method_pairs=False)
    table = metric_agreement(pairs, per_image, n_resamples=200).table
    # NIQE scores the real image, so it is also measured on the trials themselves.
    assert table.loc[table["basis"] == "trials with the real image", "metric"].tolist() == ["niqe"]
    t = table[table["basis"] == "image pairs"].set_index("metric")
    assert t.loc["psnr", "agreement"] > 0.6 and t.loc["psnr", "agreement"] > t.loc["ssim", "agreement"] + 0.1
    assert {"psnr", "lpips", "ssim", "niqe"} <= set(t.index)


def _alpha_by_hand(units: dict[str, dict[str, str]]) -> float:
    """Nominal Krippendorff alpha from the coincidence matrix (Krippendorff 2011)."""
    values = sorted({v for u in units.values() for v in u.values()})
    o = {(c, k): 0.0 for c in values for k in values}
    for u in units.values():
        vals = list(u.values())
        m = len(vals)
        if m < 2:
            continue
        for x, y in itertools.permutations(range(m), 2):
            o[(vals[x], vals[y])] += 1.0 / (m - 1)
    n_c = {c: sum(o[(c, k)] for k in values) for c in values}
    n = sum(n_c.values())
    d_o = sum(o[(c, k)] for c in values for k in values if c != k)
    d_e = sum(n_c[c] * n_c[k] for c in values for k in values if c != k) / (n - 1)
    return 1.0 - d_o / d_e


def test_krippendorff_alpha_matches_a_hand_computation():
    # Units: (image, pair); raters r1..r3; unit u4 has one judgment only and carries no information.
    units = {
        "u1": {"r1": "A", "r2": "A", "r3": "A"},
        "u2": {"r1": "A", "r2": "B", "r3": "B"},
        "u3": {"r1": "B", "r2": "B"},
        "u4": {"r1": "A"},
    }
    rows = [(r, img, "A", "B", v) for img, u in units.items() for r, v in u.items()]
    pairs = pd.DataFrame(rows, columns=["rater", "image_id", "option_a", "option_b", "winner"])
    alpha, n_units = krippendorff_alpha(pairs)
    assert alpha == pytest.approx(_alpha_by_hand(units)) and alpha == pytest.approx(1 - 7 * 2 / 32)
    assert n_units == 3


def test_reliability_high_for_consistent_raters_and_low_for_coin_flippers():
    pairs, _ = _world(seed=2, scale=6.0)
    table = reliability(pairs, n_splits=40).set_index("measure")
    assert table.loc["krippendorff_alpha", "value"] > 0.3
    assert table.loc["split_half_method", "value"] > 0.9
    coin = pairs.copy()
    rng = np.random.default_rng(0)
    coin["winner"] = np.where(rng.random(len(coin)) < 0.5, coin["option_a"], coin["option_b"])
    t2 = reliability(coin, n_splits=40).set_index("measure")
    assert abs(t2.loc["krippendorff_alpha", "value"]) < 0.1
    assert t2.loc["split_half_method_image", "value"] < 0.3
    assert "Krippendorff" in reliability_reading(table.reset_index())
    assert np.isnan(split_half(pairs[pairs["rater"] == "r0"])[0])


def _relabel(pairs: pd.DataFrame, names: dict[str, str], seed: int) -> pd.DataFrame:
    """The same judgments with methods renamed, each trial's options swapped at random and rows shuffled."""
    rng = np.random.default_rng(seed)
    out = pairs.replace({"option_a": names, "option_b": names, "winner": names})
    swap = rng.random(len(out)) < 0.5
    out.loc[swap, ["option_a", "option_b"]] = out.loc[swap, ["option_b", "option_a"]].to_numpy()
    return out.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_alpha_and_split_half_do_not_depend_on_method_names_or_order():
    pairs, _ = _world(seed=4, n_raters=10)
    alpha, n = krippendorff_alpha(pairs)
    halves = [split_half(pairs, by, n_splits=30) for by in (False, True)]
    # Renamings that reverse the alphabetical order (the old coding's "alphabetically first option").
    for k, names in enumerate([{"m1": "zeta", "m2": "alpha", "m3": "mu", "m4": "beta"},
                               {"m1": "a4", "m2": "a3", "m3": "a2", "m4": "a1"}]):
        other = _relabel(pairs, names, seed=k)
        assert krippendorff_alpha(other) == pytest.approx((alpha, n), abs=1e-12)
        for by, ref in zip((False, True), halves, strict=True):
            assert split_half(other, by, n_splits=30) == pytest.approx(ref, abs=1e-12)
    # The real image keeps its label: against it, the coding is "chose the model output", as a fool rate.
    task1 = pairs[(pairs["option_a"] == "real") | (pairs["option_b"] == "real")]
    other = _relabel(task1, {"m1": "zz", "m2": "aa"}, seed=5)
    assert krippendorff_alpha(other) == pytest.approx(krippendorff_alpha(task1), abs=1e-12)


def test_alpha_on_trials_with_the_real_image_equals_the_krippendorff_package():
    import krippendorff

    pairs, _ = _world(seed=6, n_raters=8, method_pairs=False)
    alpha, n = krippendorff_alpha(pairs)
    unit = pairs["image_id"] + "/" + pairs["option_a"] + "/" + pairs["option_b"]
    d = pd.DataFrame({"rater": pairs["rater"], "unit": unit, "v": (pairs["winner"] != "real").astype(float)})
    matrix = d.drop_duplicates(["rater", "unit"]).pivot(index="rater", columns="unit", values="v")
    matrix = matrix.loc[:, matrix.notna().sum() >= 2]
    ref = krippendorff.alpha(reliability_data=matrix.to_numpy(float), level_of_measurement="nominal")
    assert alpha == pytest.approx(ref, abs=1e-9) and n == matrix.shape[1]


def test_duel_alpha_uses_both_orientations():
    # Duel unit u: A, A, B (m = 3): o_AA = 2*1/2 = 1, o_AB = o_BA = 2*1/2 = 1; unit v: B, B: o_BB = 2.
    # Each unit counted in both orientations (weight 1/2): o_00 = o_11 = (1 + 0)/2 + (0 + 2)/2 = 1.5,
    # o_01 = 1, so n_0 = n_1 = 2.5, n = 5; alpha = 1 - D_o / D_e = 1 - 2 / (2 * 2.5 * 2.5 / 4) = 0.36.
    rows = [("r1", "u", "A", "B", "A"), ("r2", "u", "A", "B", "A"), ("r3", "u", "A", "B", "B"),
            ("r1", "v", "A", "B", "B"), ("r2", "v", "B", "A", "B")]
    pairs = pd.DataFrame(rows, columns=["rater", "image_id", "option_a", "option_b", "winner"])
    alpha, n = krippendorff_alpha(pairs)
    assert n == 2 and alpha == pytest.approx(0.36)
    # The old coding ("chose the alphabetically first option", A) gave n_A = 2 + 1, n_B = 3 + 1: 1 - 2/(2*3*4/6).
    assert alpha != pytest.approx(1 - 2 / (2 * 3 * 4 / 6))
