"""Rater quality rules, fixed at `study create` (stored in the study's config) and applied by the analysis.

A rater is excluded, with all their judgments, when any rule flags them:
- catch: accuracy on the catch trials (ground truth vs a heavily degraded copy) and attention checks (vs an
  obviously broken image) below `min_catch_accuracy`
  (given at least `min_catch` answered catch trials);
- too fast: median response time below `min_median_rt_s`, the response time of a trial being the time from
  the end of the exposure (the pair hidden) to the answer: server latency (shown report -> answer) minus
  the study's exposure (judgments answered before the exposure ended, which only scripts can write, carry no
  response time);
- side streak: the same side ("left" or "right") chosen more than `max_side_streak` times in a row;
- answer streak: the image that is not the real one chosen more than `max_answer_streak` times in a row
  (trials with the real image: method vs real and catch trials), e.g. a rater who inverted the question.
A limit of 0 turns its rule off. Every rule reads only the rater's main-block trials in presentation order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pandas as pd

from evalsuite.options import check_keys
from studies.design import CHECK_KINDS, MIN_CATCH_ACCURACY  # CHECK_KINDS: trials with a known right answer

SCRIPT_TOLERANCE_S = 0.1  # studies.store.EXPOSURE_GRACE_S (not imported: this module needs no database)
RULES = ("catch", "too_fast", "side_streak", "answer_streak")
QUALITY_COLUMNS = ["median_rt_s", "side_streak", "answer_streak", "excluded_by"]


@dataclass(frozen=True)
class QualityPolicy:
    """The rater-exclusion rules of a study (0 turns a rule off); see the module docstring."""

    min_catch_accuracy: float = MIN_CATCH_ACCURACY
    min_catch: int = 1
    min_median_rt_s: float = 0.2
    max_side_streak: int = 15
    max_answer_streak: int = 15

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_catch_accuracy <= 1.0:
            raise ValueError(f"min catch accuracy must be between 0 and 1, got {self.min_catch_accuracy}")
        if self.min_median_rt_s < 0 or self.max_side_streak < 0 or self.max_answer_streak < 0 or self.min_catch < 0:
            raise ValueError(f"quality limits must be 0 (off) or positive, got {self}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict for the study's config (`StudyConfig.quality`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QualityPolicy:
        """Inverse of to_dict(); unknown keys are an error that names the known ones."""
        check_keys(d, (f.name for f in fields(cls)), "study quality", "setting")
        return cls(**d)

    @classmethod
    def catch_only(cls, min_accuracy: float = MIN_CATCH_ACCURACY, min_catch: int = 1) -> QualityPolicy:
        """The catch rule alone (studies created before quality policies were stored)."""
        return cls(min_accuracy, min_catch, 0.0, 0, 0)

    @property
    def active(self) -> tuple[str, ...]:
        """The rules this policy applies, in RULES order."""
        on = {"catch": self.min_catch_accuracy > 0, "too_fast": self.min_median_rt_s > 0,
              "side_streak": self.max_side_streak > 0, "answer_streak": self.max_answer_streak > 0}
        return tuple(r for r in RULES if on[r])

    def rule_text(self, rule: str) -> str:
        """One rule in words."""
        return {
            "catch": f"catch-trial accuracy below {self.min_catch_accuracy:.0%} (with >= {self.min_catch} catch "
                     "trial(s) answered)",
            "too_fast": f"median response time after the pair was hidden below {self.min_median_rt_s:g} s",
            "side_streak": f"the same side chosen more than {self.max_side_streak} times in a row",
            "answer_streak": f"the image that is not the real one chosen more than {self.max_answer_streak} "
                             "times in a row",
        }[rule]

    def describe(self) -> str:
        """The whole policy in one sentence, for the notes."""
        rules = "; ".join(self.rule_text(r) for r in self.active)
        return f"raters are excluded, with all their judgments, when any rule flags them: {rules}"

    def flags(self, values: dict[str, float]) -> list[str]:
        """The rules that flag a rater with these measured values (rater_values' dict)."""
        out = []
        if values["n_catch"] >= max(self.min_catch, 1) and values["catch_accuracy"] < self.min_catch_accuracy:
            out.append("catch")
        if "too_fast" in self.active and np.isfinite(values["median_rt_s"]) \
                and values["median_rt_s"] < self.min_median_rt_s:
            out.append("too_fast")
        if "side_streak" in self.active and values["side_streak"] > self.max_side_streak:
            out.append("side_streak")
        if "answer_streak" in self.active and values["answer_streak"] > self.max_answer_streak:
            out.append("answer_streak")
        return out


def longest_run(values: pd.Series | np.ndarray, only: Any = None) -> int:
    """Length of the longest run of equal consecutive values (of value `only` when given); 0 when empty."""
    v = list(values)
    best = run = 0
    for k, x in enumerate(v):
        # A run continues while the value repeats; it counts only for `only` when that is set.
        run = run + 1 if k and x == v[k - 1] else 1
        if only is None or x == only:
            best = max(best, run)
    return best


def rater_values(main: pd.DataFrame, exposure_s: float | None) -> dict[str, float]:
    """What the rules measure on one rater's main-block judgments: catch accuracy, median RT and streaks."""
    g = main.sort_values("position") if "position" in main else main
    catch = g[g["kind"].isin(CHECK_KINDS)]
    # Response time: server latency from the shown report to the answer, less the exposure.
    rt = pd.to_numeric(g["latency_s"], errors="coerce") if "latency_s" in g else pd.Series(dtype=float)
    rt = rt.dropna() - float(exposure_s or 0.0)
    # The app refuses answers before the exposure ends (less a 0.1 s grace, studies.store.EXPOSURE_GRACE_S):
    # an earlier answer was written by a script (Store.submit, simulations) and carries no response time.
    rt = rt[rt >= -SCRIPT_TOLERANCE_S]
    # The answer streak reads only trials with the real image in them (method vs real, catch, attention).
    with_real = g[g["kind"].isin(["real", *CHECK_KINDS])]
    return {
        "n_catch": len(catch),
        "catch_accuracy": float(catch["chose_real"].astype(bool).mean()) if len(catch) else float("nan"),
        "median_rt_s": float(rt.median()) if len(rt) else float("nan"),
        "side_streak": longest_run(g["choice"]) if "choice" in g else 0,
        "answer_streak": longest_run(~with_real["chose_real"].astype(bool), only=True),
    }


__all__ = ["QUALITY_COLUMNS", "RULES", "QualityPolicy", "longest_run", "rater_values"]
