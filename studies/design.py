"""Study design: a 2AFC study's settings and each rater's trials (balanced sides, seeded order, catch trials).

Images of method j are handed out along a seeded permutation `perm_j` of the study's images, in
consecutive blocks of `per_rater`: rater k gets `perm_j[(k * per_rater + t) mod n_images]`, t < per_rater.
So a rater sees an image at most once per method, and after `balanced_raters()` raters (or any multiple)
every (method, image) pair has the same number of judgments.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

QUESTIONS = {
    1: "Which of the two images is a better high quality version of the low resolution image in the middle?",
    2: "Which image would you guess is from a camera?",
}
MIN_CATCH_ACCURACY = 0.8  # raters below this catch-trial accuracy are excluded by default
# Tags that make independent seeded streams: numpy SeedSequence([seed, tag, rater, method]).
_IMAGES, _SIDES, _CATCH, _ORDER, _PRACTICE = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class StudyConfig:
    """The settings of one 2AFC study (task 1: LR in the middle; task 2: the pair only)."""

    name: str
    run_dir: str
    task: int
    methods: tuple[str, ...]
    image_ids: tuple[str, ...]
    per_rater: int
    exposure_s: float = 3.0
    n_catch: int = 4
    n_practice: int = 3
    seed: int = 0
    quality: dict[str, Any] = field(default_factory=dict)  # studies.quality.QualityPolicy, fixed at create
    n_images: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "image_ids", tuple(self.image_ids))
        object.__setattr__(self, "n_images", len(self.image_ids))
        if self.task not in QUESTIONS:
            raise ValueError(f"task must be 1 (LR between the pair) or 2 (pair only), got {self.task}")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must be a non-empty list of distinct names, got {list(self.methods)}")
        if len(set(self.image_ids)) != len(self.image_ids) or not self.image_ids:
            raise ValueError("image_ids must be a non-empty list of distinct ids")
        if not 1 <= self.per_rater <= self.n_images:
            raise ValueError(
                f"--per-rater must be between 1 and the number of images ({self.n_images}), "
                f"got {self.per_rater}"
            )
        if not self.exposure_s > 0:
            raise ValueError(f"exposure must be positive seconds, got {self.exposure_s}")
        if not 0 <= self.n_catch <= self.n_images or not 0 <= self.n_practice <= self.n_images:
            raise ValueError(
                f"catch ({self.n_catch}) and practice ({self.n_practice}) trials must be between 0 "
                f"and the number of images ({self.n_images})"
            )

    @property
    def question(self) -> str:
        """The question raters answer."""
        return QUESTIONS[self.task]

    @property
    def show_lr(self) -> bool:
        """Whether the LR input is shown between the pair (task 1)."""
        return self.task == 1

    @property
    def trials_per_rater(self) -> int:
        """Main-block trials of one rater: per_rater per method plus the catch trials."""
        return self.per_rater * len(self.methods) + self.n_catch

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (n_images included); from_dict() reads it back."""
        d = asdict(self)
        d["methods"], d["image_ids"] = list(self.methods), list(self.image_ids)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StudyConfig:
        """Inverse of to_dict() (derived fields such as n_images and extra keys such as a study id are ignored)."""
        keys = {f.name for f in fields(cls) if f.init}
        return cls(**{k: v for k, v in d.items() if k in keys})


@dataclass(frozen=True)
class TrialPlan:
    """One planned trial: position in the order, block, kind, the pair and the side of the real image."""

    position: int
    block: str  # practice | main
    kind: str  # real (ground truth vs method output) | catch (ground truth vs degraded copy)
    method: str | None
    image_id: str
    real_side: str  # left | right
    show_lr: bool


def select_images(available: list[str], n_images: int | None, seed: int = 0) -> tuple[str, ...]:
    """The study's images: all available ids, or a seeded random subset of n_images, sorted."""
    ids = sorted(available)
    if n_images is None or n_images >= len(ids):
        return tuple(ids)
    if n_images < 1:
        raise ValueError(f"--images must be at least 1, got {n_images}")
    pick = np.random.default_rng([seed, 0]).choice(len(ids), size=n_images, replace=False)
    return tuple(sorted(ids[i] for i in pick))


def balanced_raters(config: StudyConfig) -> int:
    """Smallest number of raters (any multiple works too) giving every (method, image) equal judgments."""
    return config.n_images // math.gcd(config.n_images, config.per_rater)


def _rng(config: StudyConfig, tag: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, tag, *more])


def _sides(n: int, n_left: int, rng: np.random.Generator) -> list[str]:
    """n sides with exactly n_left 'left', in a seeded random order."""
    sides = np.array(["left"] * n_left + ["right"] * (n - n_left))
    return [str(x) for x in sides[rng.permutation(n)]]


def _half(n: int, parity: int) -> int:
    """n // 2, plus one for odd n on alternating parities (so two raters or methods together balance)."""
    return n // 2 + (n % 2 if parity % 2 == 0 else 0)


def rater_plan(config: StudyConfig, rater_index: int) -> list[TrialPlan]:
    """Rater `rater_index`'s trials: practice first, then main trials (real and catch) in a seeded order."""
    k, n, m = rater_index, config.n_images, config.per_rater
    main: list[tuple[str, str | None, str, str]] = []  # (kind, method, image_id, real_side)
    seen: set[str] = set()
    for j, method in enumerate(config.methods):
        # Images: a block of m consecutive entries of this method's permutation (distinct since m <= n).
        perm = _rng(config, _IMAGES, j).permutation(n)
        images = [config.image_ids[perm[(k * m + t) % n]] for t in range(m)]
        seen.update(images)
        # Sides: half of the rater's trials of this method show the real image on the left.
        sides = _sides(m, _half(m, k + j), _rng(config, _SIDES, k, j))
        main += [("real", method, img, side) for img, side in zip(images, sides, strict=True)]
    # Catch and practice pairs: prefer images this rater does not judge in the main block.
    unseen = [i for i in config.image_ids if i not in seen]
    rest = [i for i in config.image_ids if i in seen]
    catch_pool = [str(i) for i in _rng(config, _CATCH, k).permutation(unseen)]
    catch_pool += [str(i) for i in _rng(config, _CATCH, k, 1).permutation(rest)]
    catch_images = catch_pool[: config.n_catch]
    catch_sides = _sides(
        config.n_catch, _half(config.n_catch, k), _rng(config, _SIDES, k, len(config.methods))
    )
    main += [("catch", None, img, side) for img, side in zip(catch_images, catch_sides, strict=True)]
    # Order: one seeded shuffle of all main trials per rater.
    order = _rng(config, _ORDER, k).permutation(len(main))
    # Practice: easy pairs (ground truth vs degraded copy) from the images left after the catch trials.
    practice_pool = catch_pool[config.n_catch :] + catch_pool[: config.n_catch]
    practice_sides = _sides(config.n_practice, _half(config.n_practice, k), _rng(config, _PRACTICE, k))
    plan = [
        TrialPlan(p, "practice", "catch", None, img, side, config.show_lr)
        for p, (img, side) in enumerate(zip(practice_pool[: config.n_practice], practice_sides, strict=True))
    ]
    base = len(plan)
    for pos, idx in enumerate(order):
        kind, method, img, side = main[idx]
        plan.append(TrialPlan(base + pos, "main", kind, method, str(img), side, config.show_lr))
    return plan
