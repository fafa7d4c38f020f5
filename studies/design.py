"""Study design: a 2AFC study's settings and each rater's trials (balanced sides, seeded order, catch trials).

Two kinds of judged trials (`design`): "real" (task 1 of the paper's protocol: a method's output vs the
ground truth), "duels" (method vs method, every unordered pair of the study's methods, with the LR input
between them in task 1) or "both".

Guarantees, per rater k (the rater's *slot*: crowd raters take slots 0, 1, 2, ... in arrival order):
- Images of method j are handed out along a seeded permutation `perm_j` of the study's images, in
  consecutive blocks of `per_rater`: rater k gets `perm_j[(k * per_rater + t) mod n_images]`, t < per_rater.
  Duels of method pair q = (a, b) (`itertools.combinations` order) do the same along their own permutation
  with `per_pair` images. So a rater sees an image at most once per method and once per pair, every pair
  occurs exactly `per_pair` times per rater, and after `balanced_raters()` raters (or any multiple) every
  (method, image) and every (pair, image) has the same number of judgments (otherwise counts differ by
  at most one).
- Sides: the real image (in a duel: the pair's first method) is on the left in half of the rater's trials
  of each method (each pair); for an odd count the extra one alternates between raters and between
  methods (pairs), so two consecutive raters together balance exactly.
- Catch trials (ground truth vs a degraded copy) and attention checks (ground truth vs an obviously broken,
  flat block-noise image) use images the rater does not judge in the main block when there are any.
- One seeded shuffle per rater mixes all main trials; practice comes first.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

QUESTIONS = {
    1: "Which of the two images is a better high quality version of the low resolution image in the middle?",
    2: "Which image would you guess is from a camera?",
}
MIN_CATCH_ACCURACY = 0.8  # raters below this catch-trial accuracy are excluded by default
# Tags that make independent seeded streams: numpy SeedSequence([seed, tag, rater, method]).
_IMAGES, _SIDES, _CATCH, _ORDER, _PRACTICE, _DUEL_IMAGES, _DUEL_SIDES, _ATTENTION = 1, 2, 3, 4, 5, 6, 7, 8
DESIGNS = ("real", "duels", "both")  # judged trials: method vs real, method vs method, or both
CHECK_KINDS = ("catch", "attention")  # trials with a right answer: the rater record counts them together
# The paper's protocol (SR3, Saharia et al.): 100 test images, each rater judges 50 of them per method. A study
# from a larger run defaults to a seeded subset of PAPER_IMAGES; per rater and method at most PAPER_PER_RATER.
PAPER_IMAGES = 100
PAPER_PER_RATER = 50
ALL = "all"  # --images all / --per-rater all: every image of the run / of the study


@dataclass(frozen=True)
class CrowdConfig:
    """Recruiting settings: the shared study URL, completion code or URL, slot timeout and consent text."""

    enabled: bool = False  # a shared study URL (?study=SLUG&PROLIFIC_PID=...) hands out rater slots
    completion_code: str = ""  # shown on the end page (Prolific/MTurk completion code)
    completion_url: str = ""  # the end page redirects here (Prolific's completion URL; may hold {assignmentId} ...)
    slot_timeout_min: float = 30.0  # an unfinished slot inactive this long goes to the next arrival
    consent: str = ""  # consent text shown (and to be accepted) before practice; empty: no consent page

    def __post_init__(self) -> None:
        if not self.slot_timeout_min > 0:
            raise ValueError(f"--slot-timeout must be positive minutes, got {self.slot_timeout_min}")
        url = self.completion_url
        if url and not url.startswith(("https://", "http://", "{turkSubmitTo}/")):
            raise ValueError(f"--completion-url must start with https://, http:// or {{turkSubmitTo}}/, got {url!r}")
        if len(self.completion_code) > 200:
            raise ValueError("--completion-code must be at most 200 characters")


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
    design: str = "real"  # real | duels | both (see the module docstring)
    per_pair: int | None = None  # duels: images per rater and method pair (default per_rater)
    n_attention: int = 0  # attention checks per rater (ground truth vs an obviously broken image)
    crowd: CrowdConfig = field(default_factory=CrowdConfig)
    n_images: int = field(init=False)

    def __post_init__(self) -> None:
        if isinstance(self.crowd, dict):
            object.__setattr__(self, "crowd", CrowdConfig(**self.crowd))
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
        if not 0 <= self.n_attention <= self.n_images:
            raise ValueError(f"--attention must be between 0 and the number of images ({self.n_images})")
        if self.design not in DESIGNS:
            raise ValueError(f"--design must be one of {', '.join(DESIGNS)}, got {self.design!r}")
        if self.design != "real" and len(self.methods) < 2:
            raise ValueError(f"--design {self.design} pairs methods with each other: pass at least 2 methods")
        if self.per_pair is not None and not 1 <= self.per_pair <= self.n_images:
            raise ValueError(
                f"--per-pair must be between 1 and the number of images ({self.n_images}), got {self.per_pair}"
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
    def real_methods(self) -> tuple[str, ...]:
        """The methods judged against the real image (all of them, except in a duels-only design)."""
        return self.methods if self.design != "duels" else ()

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The method pairs of the duels (every unordered pair, in the order of `methods`); [] without duels."""
        return list(itertools.combinations(self.methods, 2)) if self.design != "real" else []

    @property
    def pair_count(self) -> int:
        """Images per rater and method pair in the duels."""
        return self.per_pair if self.per_pair is not None else self.per_rater

    @property
    def trials_per_rater(self) -> int:
        """Main-block trials of one rater: real trials, duels, catch trials and attention checks."""
        return self.per_rater * len(self.real_methods) + self.pair_count * len(self.pairs) + self.n_catch + \
            self.n_attention

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
    kind: str  # real (ground truth vs method output) | duel (method vs method_b) | catch | attention
    method: str | None
    image_id: str
    real_side: str  # left | right: the real image's side (a duel: the side of `method`)
    show_lr: bool
    method_b: str | None = None  # a duel's second method


def with_pairs(df: pd.DataFrame, real: str = "real") -> pd.DataFrame:
    """A judgments frame with the pairs columns of studies.ranking (option_a, option_b, winner) filled in where
    a row has none: a real trial is (method, `real`), won by the method when the rater did not choose the real
    image; a duel is (method, method_b), won by `method` when the rater chose its side (`chose_real` holds that
    for duels). Catch and attention trials have no options (None).
    """
    df = df.copy()
    real_trial, duel = (df["kind"] == "real").to_numpy(), (df["kind"] == "duel").to_numpy()
    chose_a = df["chose_real"].to_numpy(dtype=bool)
    method = df["method"].to_numpy(dtype=object)
    other = df["method_b"].to_numpy(dtype=object) if "method_b" in df else np.full(len(df), None, dtype=object)
    # The winner: the real image or the method (real trials); the method on the chosen side (duels).
    derived = {
        "option_a": np.where(real_trial | duel, method, None),
        "option_b": np.where(real_trial, real, np.where(duel, other, None)),
        "winner": np.where(real_trial, np.where(chose_a, real, method), np.where(duel, np.where(chose_a, method, other),
                                                                                  None)),
    }
    for col, values in derived.items():
        df[col] = df[col].where(df[col].notna(), pd.Series(values, index=df.index)) if col in df else values
    return df


def select_images(available: list[str], n_images: int | None, seed: int = 0) -> tuple[str, ...]:
    """The study's images: all available ids, or a seeded random subset of n_images, sorted."""
    ids = sorted(available)
    if n_images is None or n_images >= len(ids):
        return tuple(ids)
    if n_images < 1:
        raise ValueError(f"--images must be at least 1, got {n_images}")
    pick = np.random.default_rng([seed, 0]).choice(len(ids), size=n_images, replace=False)
    return tuple(sorted(ids[i] for i in pick))


def study_size(available: int, n_images: int | str | None, per_rater: int | str | None) -> tuple[int, int]:
    """(images, images per rater and method) of a study on a run with `available` usable images.

    Defaults (None): the paper's protocol, PAPER_IMAGES images (all of them when the run has no more) and
    PAPER_PER_RATER per rater and method (all when the study has fewer); "all" takes every image; a number
    larger than what there is is cut to it.
    """
    if available < 1:
        raise ValueError("the run has no usable image")
    for flag, value in (("--images", n_images), ("--per-rater", per_rater)):
        if isinstance(value, str) and value != ALL or isinstance(value, int) and value < 1:
            raise ValueError(f"{flag} must be a positive number or {ALL!r}, got {value!r}")
    n = available if n_images == ALL else min(PAPER_IMAGES if n_images is None else int(n_images), available)
    k = n if per_rater == ALL else min(PAPER_PER_RATER if per_rater is None else int(per_rater), n)
    return n, k


def describe_sample(available: int, n_images: int, per_rater: int, seed: int, defaults: tuple[bool, bool]) -> str:
    """What `study create` sampled from the run and which flags change it; `defaults`: whether the image count
    and the per-rater count were defaults (not given)."""
    if n_images < available:
        images = f"a seeded random subset of {n_images} of the run's {available} images (seed {seed})"
    else:
        images = f"all {available} images of the run"
    paper = " (the paper's protocol: the default for runs of more than 100 images)" \
        if defaults[0] and n_images == PAPER_IMAGES < available else ""
    per = f"{per_rater} of them per rater and method" + (" (default: at most 50)" if defaults[1] else "")
    return (f"images: {images}{paper}; {per}. Change with --images N (or all), --per-rater N (or all), "
            "--seed S (another subset)")


def balanced_raters(config: StudyConfig) -> int:
    """Smallest number of raters (any multiple works too) giving every (method or pair, image) equal judgments."""
    n = config.n_images
    real = n // math.gcd(n, config.per_rater) if config.real_methods else 1
    duels = n // math.gcd(n, config.pair_count) if config.pairs else 1
    return math.lcm(real, duels)


def _rng(config: StudyConfig, tag: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, tag, *more])


def _sides(n: int, n_left: int, rng: np.random.Generator) -> list[str]:
    """n sides with exactly n_left 'left', in a seeded random order."""
    sides = np.array(["left"] * n_left + ["right"] * (n - n_left))
    return [str(x) for x in sides[rng.permutation(n)]]


def _half(n: int, parity: int) -> int:
    """n // 2, plus one for odd n on alternating parities (so two raters or methods together balance)."""
    return n // 2 + (n % 2 if parity % 2 == 0 else 0)


def _block(config: StudyConfig, k: int, j: int, count: int, tags: tuple[int, int]) -> list[tuple[str, str]]:
    """Rater k's (image, side) pairs of stream j (a method or a method pair), `tags` its image and side streams.

    Images: `count` consecutive entries of the stream's seeded permutation (distinct since count <= n).
    Sides: half of them (the extra one of an odd count alternating with k + j) show the first option left.
    """
    n = config.n_images
    perm = _rng(config, tags[0], j).permutation(n)
    images = [config.image_ids[perm[(k * count + t) % n]] for t in range(count)]
    sides = _sides(count, _half(count, k + j), _rng(config, tags[1], k, j))
    return list(zip(images, sides, strict=True))


def rater_plan(config: StudyConfig, rater_index: int) -> list[TrialPlan]:
    """Rater `rater_index`'s trials: practice first, then main trials (real, duels, checks) in a seeded order."""
    k = rater_index
    main: list[tuple[str, str | None, str, str, str | None]] = []  # (kind, method, image_id, side, method_b)
    # Real trials: method j's block of per_rater images, the real image on the left in half of them.
    for j, method in enumerate(config.real_methods):
        main += [("real", method, img, side, None) for img, side in _block(config, k, j, config.per_rater,
                                                                           (_IMAGES, _SIDES))]
    # Duels: pair q's block of pair_count images along its own streams, method a on the left in half of them.
    for q, (a, b) in enumerate(config.pairs):
        main += [("duel", a, img, side, b) for img, side in _block(config, k, q, config.pair_count,
                                                                    (_DUEL_IMAGES, _DUEL_SIDES))]
    seen = {img for _kind, _m, img, _side, _b in main}
    # Catch and practice pairs: prefer images this rater does not judge in the main block.
    unseen = [i for i in config.image_ids if i not in seen]
    rest = [i for i in config.image_ids if i in seen]
    catch_pool = [str(i) for i in _rng(config, _CATCH, k).permutation(unseen)]
    catch_pool += [str(i) for i in _rng(config, _CATCH, k, 1).permutation(rest)]
    catch_images = catch_pool[: config.n_catch]
    catch_sides = _sides(
        config.n_catch, _half(config.n_catch, k), _rng(config, _SIDES, k, len(config.methods))
    )
    main += [("catch", None, img, side, None) for img, side in zip(catch_images, catch_sides, strict=True)]
    # Attention checks: the next images of the pool, against an obviously broken image.
    n_check = config.n_catch + config.n_attention
    attention_images = (catch_pool[config.n_catch :] + catch_pool)[: config.n_attention]
    attention_sides = _sides(config.n_attention, _half(config.n_attention, k + 1), _rng(config, _ATTENTION, k))
    main += [("attention", None, img, side, None) for img, side in zip(attention_images, attention_sides, strict=True)]
    # Order: one seeded shuffle of all main trials per rater.
    order = _rng(config, _ORDER, k).permutation(len(main))
    # Practice: easy pairs (ground truth vs degraded copy) from the images left after the check trials.
    practice_pool = catch_pool[n_check:] + catch_pool[:n_check]
    practice_sides = _sides(config.n_practice, _half(config.n_practice, k), _rng(config, _PRACTICE, k))
    plan = [
        TrialPlan(p, "practice", "catch", None, img, side, config.show_lr)
        for p, (img, side) in enumerate(zip(practice_pool[: config.n_practice], practice_sides, strict=True))
    ]
    base = len(plan)
    for pos, idx in enumerate(order):
        kind, method, img, side, method_b = main[idx]
        plan.append(TrialPlan(base + pos, "main", kind, method, str(img), side, config.show_lr, method_b))
    return plan
