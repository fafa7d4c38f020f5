"""The attacker's view of a whole study: per trial, everything the browser receives (byte sizes, format,
metadata, names, element order) predicts the real image's side no better than chance (binomial test)."""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from study_support import make_run_folder

from studies.payload import decode_rgb, display_payload, parse_payload, study_need
from studies.service import create_study, invite_raters
from studies.store import Store


def _guess(a: float, b: float) -> str:
    """Guess the real side from one feature per side: the larger value; ties say left."""
    return "right" if b > a else "left"


def test_a_classifier_on_what_the_browser_receives_is_at_chance(tmp_path):
    # Outputs that compress very differently from the ground truth (nearest: blocky) and a smooth one.
    run = make_run_folder(tmp_path / "run", n_images=24, size=48, methods=("bicubic", "nearest"))
    db = str(tmp_path / "s.db")
    made = create_study(run, db, task=1, methods=("bicubic", "nearest"), per_rater=12, n_catch=4, n_practice=0)
    tokens = [t for _, t in invite_raters(db, 4)]
    store = Store(db, create=False)
    need = study_need(store.stimulus_sizes(made.study_id))
    cache = {}

    def pixels(stimulus_id: str):
        if stimulus_id not in cache:
            cache[stimulus_id] = decode_rgb(store.stimulus_png(stimulus_id))
        return cache[stimulus_id]

    plan = store.assignments_frame(made.study_id).set_index(["rater_index", "position"])
    real, guesses = [], {"larger is real": [], "first is real": [], "header": [], "name": [], "png size": []}
    # Display ids as the app makes them (128 random bits), from a seeded generator: the verdict on the header is
    # then the same on every run, not a 1-in-100 false alarm of a random id's parity.
    ids = np.random.default_rng(0)
    for token in tokens:
        rater = store.rater_by_token(token)
        for t in store.trials(rater.id):
            data = display_payload(t, ids.bytes(16).hex(), 3.0, need, pixels)
            header, blocks = parse_payload(data)
            left, right = blocks[0], blocks[-1] if len(blocks) == 2 else blocks[1]
            real.append(plan.loc[(rater.index, t.position), "real_side"])
            guesses["larger is real"].append(_guess(len(left), len(right)))
            guesses["first is real"].append("left")  # the left image always comes first
            guesses["header"].append(_guess(0, int(header["display"], 16) % 2))
            guesses["name"].append(_guess(0, int(header["display"][-1], 16) % 2))
            # What the stored PNG sizes would have told (the old app sent the PNGs): the larger is real.
            png = (len(store.stimulus_png(t.left_id)), len(store.stimulus_png(t.right_id)))
            guesses["png size"].append(_guess(*png))
            assert len(left) == len(right)
            assert set(header) == {"v", "mode", "display", "exposure_ms", "w", "h", "lr", "need", "shown_url"}
    store.dispose()
    n = len(real)
    assert n == 4 * (2 * 12 + 4)
    for name, guess in guesses.items():
        k = sum(g == r for g, r in zip(guess, real, strict=True))
        p = binomtest(k, n, 0.5).pvalue
        if name == "png size":
            assert p < 1e-6, "the PNG sizes should give the real image away (the attack this test models)"
        else:
            assert p > 0.01, f"{name}: {k}/{n} right (p = {p:.2g})"
    assert np.mean([r == "left" for r in real]) == 0.5  # sides balanced, so "first is real" is at chance
