"""Rater-quality rules: simulated raters are flagged by exactly the rule they break; the policy is stored."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from studies.analysis import STORED, analyze_frame
from studies.quality import QualityPolicy, longest_run

EXPOSURE = 3.0


def _rater(name: str, seed: int, n: int = 40, side=None, fast: bool = False, fail_catch: bool = False,
           inverted: bool = False) -> list[dict]:
    """One rater's main-block trials: 4 catch trials, the rest real; a good rater picks the real image 70%."""
    rng = np.random.default_rng(seed)
    rows = []
    for pos in range(n):
        kind = "catch" if pos % 10 == 5 else "real"
        real_side = ["left", "right"][(pos * 7 + seed) % 3 % 2]  # mixed sides, no long runs
        if side is not None:
            choice = side
            real_side = side if kind == "catch" else real_side  # the streaker still passes the catch trials
        else:
            pick_real = kind == "catch" or rng.random() < 0.7
            pick_real = (not pick_real) if inverted else pick_real
            pick_real = False if (fail_catch and kind == "catch") else pick_real
            choice = real_side if pick_real else ("right" if real_side == "left" else "left")
        rows.append({"study_id": 1, "study": "s", "task": 1, "rater_id": name, "rater_label": name.upper(),
                     "position": pos, "block": "main", "kind": kind, "method": None if kind == "catch" else "m",
                     "image_id": f"i{pos % 8}", "real_side": real_side, "choice": choice,
                     "chose_real": choice == real_side,
                     "latency_s": EXPOSURE + (0.05 if fast else 0.6 + 0.3 * rng.random())})
    return rows


def _study(quality: dict | None) -> list[dict]:
    return [{"id": 1, "name": "s", "task": 1, "exposure_s": EXPOSURE, "methods": ["m"], "per_rater": 36,
             "n_images": 8, "run_dir": "", **({"quality": quality} if quality is not None else {})}]


def test_each_simulated_rater_is_flagged_by_exactly_its_rule():
    raters = (_rater("streaker", 1, side="left") + _rater("fast", 2, fast=True)
              + _rater("catchfail", 3, fail_catch=True) + _rater("inverted", 4, inverted=True)
              + [r for k in range(4) for r in _rater(f"good{k}", 10 + k)])
    # A script's answers (no wait for the exposure, as Store.submit or a simulation writes them) carry no time.
    raters += [r | {"latency_s": 0.001} for r in _rater("scripted", 20)]
    df = pd.DataFrame(raters)
    policy = QualityPolicy(min_median_rt_s=0.2, max_side_streak=12, max_answer_streak=10)
    res = analyze_frame(df, _study(policy.to_dict()), n_resamples=50)
    by = res.raters.set_index("rater_id")["excluded_by"].to_dict()
    assert by == {"streaker": "side_streak", "fast": "too_fast", "catchfail": "catch",
                  "inverted": "catch;answer_streak", "good0": "", "good1": "", "good2": "", "good3": "",
                  "scripted": ""}
    assert res.raters.set_index("rater_id").loc["streaker", "side_streak"] == 40
    # How many raters each rule removed, and which alone.
    counts = {c["rule"]: (c["n_raters"], c["n_only"]) for c in res.study["exclusions"]}
    assert counts == {"catch": (2, 1), "too_fast": (1, 1), "side_streak": (1, 1), "answer_streak": (1, 0)}
    assert "4 of 9 rater(s) excluded" in res.notes[1] and "same side chosen more than 12" in res.notes[1]
    assert (res.fool_rates["exclusion"] == "quality rules").all() and res.fool_rates["n_raters"].item() == 5
    # The stored policy decides: the same frame with a study that stored no policy has the catch rule alone,
    # a rule set to 0 is off, and None keeps everyone.
    legacy = analyze_frame(df, _study(None), n_resamples=50).raters.set_index("rater_id")["excluded_by"]
    assert set(legacy[legacy != ""].index) == {"catchfail", "inverted"}
    off = analyze_frame(df, _study(policy.to_dict() | {"max_side_streak": 0}), n_resamples=50)
    assert "streaker" not in set(off.raters.loc[off.raters["excluded"], "rater_id"])
    assert not analyze_frame(df, _study(policy.to_dict()), None, n_resamples=50).raters["excluded"].any()
    # An override of the catch minimum keeps the other stored rules.
    low = analyze_frame(df, _study(policy.to_dict()), {"min_catch_accuracy": 0.0}, n_resamples=50)
    assert set(low.raters.loc[low.raters["excluded"], "rater_id"]) == {"streaker", "fast", "inverted"}
    assert "catch" not in {c["rule"] for c in low.study["exclusions"]}  # 0 turns the catch rule off too
    off = analyze_frame(df, _study(QualityPolicy(0.0, 1, 0.0, 0, 0).to_dict()), n_resamples=50)
    assert not off.raters["excluded"].any() and off.notes[1].startswith("no rater exclusion")
    assert (off.fool_rates["exclusion"] == "none").all()


def test_longest_run_and_policy_round_trip():
    assert longest_run(["l", "l", "r", "l", "l", "l"]) == 3 and longest_run([]) == 0
    assert longest_run([True, False, False, True], only=True) == 1
    p = QualityPolicy(min_median_rt_s=0.5, max_side_streak=9)
    assert QualityPolicy.from_dict(p.to_dict()) == p
    assert QualityPolicy.catch_only().active == ("catch",)
    with pytest.raises(ValueError, match="unknown study quality setting"):
        QualityPolicy.from_dict({"max_streak": 3})
    with pytest.raises(ValueError, match="between 0 and 1"):
        QualityPolicy(min_catch_accuracy=80)


def test_the_exclusion_option_is_shared_and_overrides_the_stored_policy():
    from studies.cli import add_exclusion_arguments, exclusion_rule

    parser = argparse.ArgumentParser()
    add_exclusion_arguments(parser)
    assert exclusion_rule(parser.parse_args([])) == STORED
    assert exclusion_rule(parser.parse_args(["--min-catch-accuracy", "0.5"])) == {"min_catch_accuracy": 0.5}
    assert exclusion_rule(parser.parse_args(["--no-exclusion"])) is None
    with pytest.raises(ValueError, match="between 0 and 1"):
        exclusion_rule(parser.parse_args(["--min-catch-accuracy", "80"]))


def test_notes_and_counts_name_only_the_rule_sets_of_the_studies_analysed():
    """Two studies with their own policies: the notes list those two rule sets, not the catch-only default
    that covers rows of unlisted studies, and the counts list only rules some study applies."""
    a = QualityPolicy(min_median_rt_s=0.0, max_side_streak=12, max_answer_streak=0)
    b = QualityPolicy(min_median_rt_s=0.5, max_side_streak=0, max_answer_streak=0)
    rows = _rater("streaker", 1, side="left") + [r | {"study_id": 2} for r in _rater("good", 2)]
    studies = _study(a.to_dict()) + [s | {"id": 2, "quality": b.to_dict()} for s in _study(None)]
    res = analyze_frame(pd.DataFrame(rows), studies, n_resamples=50)
    assert res.notes[1].startswith(a.describe() + "; " + b.describe() + "; ")
    assert res.notes[1].count("raters are excluded") == 2
    assert {c["rule"] for c in res.study["exclusions"]} == {"catch", "side_streak", "too_fast"}
    # One study: its policy alone, once.
    one = analyze_frame(pd.DataFrame(rows[:40]), _study(a.to_dict()), n_resamples=50)
    assert one.notes[1].startswith(a.describe() + "; ") and one.notes[1].count("raters are excluded") == 1


def test_answer_streak_reads_only_trials_with_the_real_image():
    """In a duel `chose_real` means "the first method's side": duels between wrong answers are no streak."""
    rows, pos = [], 0
    for _block in range(3):
        # 8 wrong real trials, 8 duels (chose_real False), then 1 right real trial: real-only streak 8.
        for kind, right in [("real", False)] * 8 + [("duel", False)] * 8 + [("real", True)]:
            real_side = "left" if pos % 2 else "right"
            choice = real_side if right else ("right" if real_side == "left" else "left")
            rows.append({"study_id": 1, "study": "s", "task": 1, "rater_id": "d", "rater_label": "D",
                         "position": pos, "block": "main", "kind": kind, "method": "m",
                         "method_b": "m2" if kind == "duel" else None, "image_id": f"i{pos % 8}",
                         "real_side": real_side, "choice": choice, "chose_real": right, "latency_s": EXPOSURE + 1})
            pos += 1
    policy = QualityPolicy(min_catch_accuracy=0.0, max_side_streak=0, max_answer_streak=10)
    res = analyze_frame(pd.DataFrame(rows), _study(policy.to_dict()), n_resamples=50)
    assert res.raters.set_index("rater_id").loc["d", "answer_streak"] == 8
    assert not res.raters["excluded"].any()
