"""The regression baseline: MSE at the paper's lr by default, runs as a method, tiles large images."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_train import make_photos, tiny_cfg

from baselines.checkpoint import NotACheckpointError, load_checkpoint
from baselines.regression import build_regression
from baselines.train import load_recipe, train
from evalsuite.methods import MethodContext


def test_regression_trains_loads_and_is_deterministic(tmp_path):
    data = make_photos(tmp_path / "photos")
    cfg = tiny_cfg(tmp_path, data, steps=40, lr=3e-3, warmup=5, save_every=10**6)
    recipe = load_recipe("regression", cfg, {"preset": "tiny"})
    with pytest.raises(ValueError, match="--crop 18 must be a multiple of 4"):
        load_recipe("regression", tiny_cfg(tmp_path, data, crop=18), {"preset": "tiny"})
    # The paper's learning rate is the default.
    assert recipe.build_optimizers(recipe.build_modules(), None)["net"].param_groups[0]["lr"] == 1e-5
    res = train(recipe, cfg, log=lambda s: None)
    losses = [r["loss"] for r in res.history]
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    ck = load_checkpoint(res.checkpoint)
    assert ck.kind == "regression" and ck.config["scale"] == 2
    m = build_regression(str(res.checkpoint), MethodContext(2))
    assert m.tile == 8
    x = torch.rand(3, 3, 8, 8)
    out = m(x)
    assert out.shape == (3, 3, 16, 16)
    torch.testing.assert_close(m(x[1:2]), out[1:2], atol=1e-5, rtol=0)
    # A larger, odd-sized image goes through tiles.
    big = m(torch.rand(1, 3, 11, 19))
    assert big.shape == (1, 3, 22, 38) and torch.isfinite(big).all()
    # Tiles larger than the training crops (or none) work but warn: the outputs can be far off.
    for tile in (16, 0):
        with pytest.warns(UserWarning, match="trained on 8 px LR crops.*Leave the `tile` option unset"):
            build_regression(str(res.checkpoint), MethodContext(2, options={"tile": tile}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_regression(str(res.checkpoint), MethodContext(2))  # the training size
        build_regression(str(res.checkpoint), MethodContext(2, options={"tile": 4}))
    with pytest.raises(NotACheckpointError, match="'regression' checkpoint, expected 'sr3'"):
        from baselines.sr3.method import build_sr3

        build_sr3(str(res.checkpoint), MethodContext(2))
