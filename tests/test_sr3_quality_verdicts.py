"""benchmarks/sr3_quality.py judges each check per image: the share of held-out images that pass, and the
worst decile by margin (a mean can hide a failure on a third of the images)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

spec = importlib.util.spec_from_file_location(
    "sr3_quality", Path(__file__).parents[1] / "benchmarks" / "sr3_quality.py"
)
Q = importlib.util.module_from_spec(spec)
spec.loader.exec_module(Q)


def _tables(n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"img{k}" for k in range(n)]
    sr3 = pd.DataFrame(
        {"consistency": 2.0, "colour_shift": 0.5, "detail": -1.0, "detail_fidelity": 0.3}, index=ids
    )
    reg = pd.DataFrame({"consistency": 1.0, "colour_shift": 0.2, "detail": -9.0, "detail_fidelity": 0.2}, index=ids)
    return sr3, reg


def _line(lines: list[str], name: str) -> tuple[str, str]:
    k = next(i for i, x in enumerate(lines) if x.startswith(name + ":"))
    return lines[k], lines[k + 1]


def test_every_check_passes_on_good_images():
    lines = Q.verdicts(*_tables())
    for name in ("consistency", "colour", "detail", "fidelity"):
        assert _line(lines, name)[0].endswith("100% of 10 images pass (bar 90%): PASS")
    assert any("LPIPS: not computed" in x for x in lines)


def test_a_failure_on_a_fifth_of_the_images_fails_although_the_mean_passes():
    sr3, reg = _tables()
    sr3.loc[["img3", "img7"], "detail"] = 9.0  # grain: far above the truth's detail on two images
    sr3.loc["img7", "detail_fidelity"] = 0.0
    assert sr3["detail"].mean() - reg["detail"].mean() >= 3 and sr3["detail"].mean() <= 3  # the mean would pass
    verdict, worst = _line(Q.verdicts(sr3, reg), "detail")
    assert "80% of 10 images pass" in verdict and verdict.endswith("FAIL")
    assert "img3" in worst or "img7" in worst
    verdict, worst = _line(Q.verdicts(sr3, reg), "fidelity")
    assert "90% of 10 images pass" in verdict and verdict.endswith("PASS") and "img7 (-0.20)" in worst


def test_one_bad_image_in_ten_still_passes_and_is_named():
    sr3, reg = _tables()
    sr3.loc["img5", "consistency"] = 5.0
    verdict, worst = _line(Q.verdicts(sr3, reg), "consistency")
    assert "90% of 10 images pass" in verdict and verdict.endswith("PASS") and "img5 (-2.00)" in worst
