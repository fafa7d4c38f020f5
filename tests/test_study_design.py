"""Study design: balanced sides, seeded order, at most once per method, equal judgments, catch, practice."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from studies.design import QUESTIONS, StudyConfig, balanced_raters, rater_plan, select_images


def _config(**kw) -> StudyConfig:
    base = dict(
        name="t",
        run_dir="/x",
        task=1,
        methods=("sr3", "gan", "bicubic"),
        image_ids=tuple(f"im{i:02d}" for i in range(12)),
        per_rater=8,
        n_catch=4,
        n_practice=3,
        seed=7,
    )
    base.update(kw)
    return StudyConfig(**base)


def test_each_rater_sees_each_image_at_most_once_per_method_and_sides_balance():
    cfg = _config()
    for k in range(6):
        plan = rater_plan(cfg, k)
        main = [t for t in plan if t.block == "main" and t.kind == "real"]
        assert len(main) == cfg.per_rater * len(cfg.methods)
        for m in cfg.methods:
            imgs = [t.image_id for t in main if t.method == m]
            assert len(imgs) == len(set(imgs)) == cfg.per_rater
            # Left/right balanced per rater and per method (per_rater is even: exactly half).
            assert Counter(t.real_side for t in main if t.method == m) == {"left": 4, "right": 4}
        assert [t.position for t in plan] == list(range(len(plan)))


def test_odd_counts_balance_over_pairs_of_raters():
    cfg = _config(per_rater=5)
    sides = Counter()
    for k in range(2):
        real = [t for t in rater_plan(cfg, k) if t.kind == "real"]
        sides.update((t.method, t.real_side) for t in real)
        # One rater: 15 real trials (3 methods x 5), each method 3/2 or 2/3 left/right.
        assert abs(sum(t.real_side == "left" for t in real) - 7.5) <= 1.5
    for m in cfg.methods:
        assert sides[(m, "left")] == sides[(m, "right")] == 5


def test_balanced_number_of_raters_gives_equal_judgments_per_method_and_image():
    cfg = _config(per_rater=8)  # 12 images, 8 per rater -> 3 raters balance
    assert balanced_raters(cfg) == 3
    for n_raters in (3, 6):
        counts = Counter(
            (t.method, t.image_id) for k in range(n_raters) for t in rater_plan(cfg, k) if t.kind == "real"
        )
        assert len(counts) == len(cfg.methods) * cfg.n_images
        assert set(counts.values()) == {n_raters * cfg.per_rater // cfg.n_images}
    # With a non-balancing number of raters counts differ by at most one.
    counts = Counter((t.method, t.image_id) for k in range(2) for t in rater_plan(cfg, k) if t.kind == "real")
    assert max(counts.values()) - min(counts.values()) <= 1


def test_order_is_seeded_reproducible_and_differs_between_raters_and_seeds():
    cfg = _config()
    assert rater_plan(cfg, 3) == rater_plan(_config(), 3)
    key = [(t.method, t.image_id) for t in rater_plan(cfg, 0)]
    assert key != [(t.method, t.image_id) for t in rater_plan(cfg, 1)]
    assert key != [(t.method, t.image_id) for t in rater_plan(_config(seed=8), 0)]
    # Methods are interleaved, not blocked: the first per_rater trials are not all one method.
    main = [t for t in rater_plan(cfg, 0) if t.block == "main"]
    assert len({t.method for t in main[: cfg.per_rater]}) > 1


def test_practice_first_then_catch_trials_on_unseen_images_when_possible():
    cfg = _config(methods=("sr3",), per_rater=5)  # 7 unseen images: 4 catch + 3 practice
    plan = rater_plan(cfg, 0)
    assert [t.block for t in plan[:3]] == ["practice"] * 3
    assert all(t.block == "main" for t in plan[3:])
    assert all(t.kind == "catch" and t.method is None for t in plan[:3])
    catch = [t for t in plan if t.block == "main" and t.kind == "catch"]
    assert len(catch) == 4 and Counter(t.real_side for t in catch) == {"left": 2, "right": 2}
    seen = {t.image_id for t in plan if t.kind == "real"}
    assert not seen & {t.image_id for t in catch}
    assert not seen & {t.image_id for t in plan[:3]}
    assert all(t.show_lr for t in plan)
    assert not any(t.show_lr for t in rater_plan(_config(task=2), 0))


def test_config_round_trip_questions_and_clear_errors():
    cfg = _config(exposure_s=12.0)
    assert StudyConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.question == QUESTIONS[1] and "camera" in _config(task=2).question
    assert _config().exposure_s == 3.0
    with pytest.raises(ValueError, match="per-rater"):
        _config(per_rater=13)
    with pytest.raises(ValueError, match="task"):
        _config(task=3)
    with pytest.raises(ValueError, match="distinct"):
        _config(methods=("a", "a"))
    with pytest.raises(ValueError, match="exposure"):
        _config(exposure_s=0)


def test_select_images_is_a_seeded_sorted_subset():
    ids = [f"x{i}" for i in range(20)]
    a = select_images(ids, 5, seed=1)
    assert a == select_images(ids, 5, seed=1) and len(a) == 5 and list(a) == sorted(a) and set(a) <= set(ids)
    assert a != select_images(ids, 5, seed=2)
    assert select_images(ids, None) == tuple(sorted(ids)) == select_images(ids, 100)


def test_duels_of_four_methods_balance_pairs_sides_and_images_per_rater():
    methods = ("sr3", "gan", "bicubic", "nearest")
    cfg = _config(methods=methods, design="both", per_rater=3, per_pair=3, n_catch=2, n_attention=1)
    pairs = list(itertools.combinations(methods, 2))
    assert cfg.pairs == pairs and len(pairs) == 6
    assert cfg.trials_per_rater == 4 * 3 + 6 * 3 + 2 + 1
    n_raters = balanced_raters(cfg)
    assert n_raters == 4  # 12 images, 3 per rater and pair (or method)
    per_image, sides = Counter(), Counter()
    for k in range(2 * n_raters):
        plan = rater_plan(cfg, k)
        assert len([t for t in plan if t.block == "main"]) == cfg.trials_per_rater
        duels = [t for t in plan if t.kind == "duel"]
        # Every unordered pair exactly per_pair times per rater, each image at most once per pair.
        assert Counter((t.method, t.method_b) for t in duels) == {p: 3 for p in pairs}
        for p in pairs:
            imgs = [t.image_id for t in duels if (t.method, t.method_b) == p]
            assert len(set(imgs)) == 3
            # Sides: 3 trials -> 2/1 or 1/2 per rater, alternating so two consecutive raters balance exactly.
            left = sum(t.real_side == "left" for t in duels if (t.method, t.method_b) == p)
            assert left in (1, 2)
            sides[(k // 2, p)] += left
        per_image.update((t.method, t.method_b, t.image_id) for t in duels)
        assert Counter(t.kind for t in plan if t.block == "main") == {"real": 12, "duel": 18, "catch": 2,
                                                                      "attention": 1}
        assert all(t.method_b is None for t in plan if t.kind != "duel")
    assert set(sides.values()) == {3}  # two raters: 3 of 6 duels of each pair with the first method on the left
    # balanced_raters raters (here twice over): every (pair, image) judged equally often.
    assert len(per_image) == 6 * 12 and set(per_image.values()) == {2}


def test_duels_only_design_and_errors():
    cfg = _config(methods=("a", "b"), design="duels", per_pair=2, n_catch=0, n_practice=0)
    plan = rater_plan(cfg, 0)
    assert [t.kind for t in plan] == ["duel", "duel"] and {t.real_side for t in plan} == {"left", "right"}
    assert balanced_raters(cfg) == 6
    with pytest.raises(ValueError, match="at least 2 methods"):
        _config(methods=("a",), design="duels")
    with pytest.raises(ValueError, match="--design"):
        _config(design="pairs")
    with pytest.raises(ValueError, match="--per-pair"):
        _config(design="duels", per_pair=0)
    # Attention checks: on images the rater does not judge, apart from the catch images, sides balanced.
    cfg = _config(methods=("sr3",), per_rater=4, n_catch=2, n_attention=2, n_practice=0)
    for k in range(3):
        plan = rater_plan(cfg, k)
        seen = {t.image_id for t in plan if t.kind == "real"}
        catch = {t.image_id for t in plan if t.kind == "catch"}
        attention = [t for t in plan if t.kind == "attention"]
        assert len(attention) == 2 and not {t.image_id for t in attention} & (seen | catch)
        assert Counter(t.real_side for t in attention) == {"left": 1, "right": 1}
