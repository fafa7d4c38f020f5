"""The extended analysis from a store-shaped judgments frame: 4 methods vs the real image, exclusions, save."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from studies.extended import ExtendedAnalysis, extended_analysis, read_per_image

FOOL = {"sr3": 0.45, "regression": 0.3, "gan": 0.2, "bicubic": 0.05}


def _judgments(seed: int = 0, n_raters: int = 12, n_images: int = 16) -> pd.DataFrame:
    """Task 1 judgments as Store.judgments_frame() returns them; rater 'bad' always picks the left image."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in [f"r{k}" for k in range(n_raters)] + ["bad"]:
        for m, p in FOOL.items():
            for img in rng.choice(n_images, 8, replace=False):
                side = "left" if rng.random() < 0.5 else "right"
                fooled = rng.random() < p if r != "bad" else side == "right"
                rows.append({"rater_id": r, "block": "main", "kind": "real", "method": m, "image_id": f"i{img}",
                             "real_side": side, "chose_real": not fooled, "task": 1})
        rows.append({"rater_id": r, "block": "main", "kind": "catch", "method": None, "image_id": "c0",
                     "real_side": "left", "chose_real": r != "bad", "task": 1})
    return pd.DataFrame(rows)


def test_four_methods_ranked_with_agreement_and_saved(tmp_path):
    judgments = _judgments()
    per_image = pd.DataFrame([
        {"method": m, "image_id": f"i{k}", "psnr": 20 + 10 * p + np.sin(k), "lpips": 0.5 - p}
        for m, p in FOOL.items() for k in range(16)
    ])
    (tmp_path / "run").mkdir()
    per_image.to_csv(tmp_path / "run" / "per_image.csv", index=False)
    result = extended_analysis(judgments, read_per_image(tmp_path / "run"), excluded=["bad"],
                               methods=[*FOOL, "never_judged"], n_resamples=100)
    s = result.ranking.scores
    assert s["option"].tolist()[:5] == ["real", "sr3", "regression", "gan", "bicubic"]
    # Task 1 only: a Bradley-Terry score vs the real image is the log-odds of the fool rate.
    sr3 = s.set_index("option").loc["sr3"]
    assert sr3["score"] == pytest.approx(np.log(0.45 / 0.55), abs=0.3)
    assert expit(sr3["ci_low"]) < 0.45 < expit(sr3["ci_high"])
    assert "never compared" in s.set_index("option").loc["never_judged", "note"]
    assert result.ranking.totals.loc["sr3", "real"] == 12 * 8  # the excluded rater's trials are gone
    agree = result.agreement.table.set_index("metric")
    assert agree.loc["psnr", "spearman_rho"] == pytest.approx(1.0)
    assert agree.loc["lpips", "spearman_rho"] == pytest.approx(1.0)
    readings = result.readings()
    assert set(readings) == {"ranking", "win_matrix", "agreement", "reliability"}
    vs_real = result.ranking.win_fraction.loc["real"].drop(["real", "never_judged"])
    assert f"{vs_real.min():.0%} to {vs_real.max():.0%}" in readings["win_matrix"]
    out = result.save(tmp_path / "out")
    for name in ("ranking.csv", "win_matrix.csv", "win_counts.csv", "agreement.csv", "reliability.csv",
                 "ranking.svg", "win_matrix.svg", "extended.json"):
        assert (out / name).exists(), name
    assert json.loads((out / "extended.json").read_text())["readings"]["ranking"].startswith("sr3 ranks first")
    # Round trip: the report reads the folder back and gets the same tables and readings.
    back = ExtendedAnalysis.load(out)
    assert back.readings() == readings
    pd.testing.assert_frame_equal(back.ranking.scores, result.ranking.scores, check_dtype=False)
    pd.testing.assert_frame_equal(back.ranking.totals, result.ranking.totals, check_dtype=False, check_names=False)
    assert back.ranking.win_table().equals(result.ranking.win_table())
    pd.testing.assert_frame_equal(back.agreement.table, result.agreement.table, check_dtype=False)
    assert ExtendedAnalysis.load(tmp_path) is None
    with pytest.raises(ValueError, match="no main-block judgments"):
        extended_analysis(judgments, tasks=[2])
    with pytest.raises(FileNotFoundError, match="per_image.csv"):
        read_per_image(tmp_path)
