"""The shipped demo models: small, loadable as ordinary checkpoints, in the default methods of 4x runs."""

from __future__ import annotations

import torch

from baselines.demo import DEMO_STEPS, demo_path
from evalsuite.methods import MethodContext, build_method, method_options
from evalsuite.runner import default_methods
from evalsuite.tasks import resolve_task


def test_demo_checkpoints_are_small_fp16_and_sr_4x():
    total = 0
    for name in ("sr3-demo", "regression-demo"):
        from baselines.checkpoint import load_checkpoint

        ck = load_checkpoint(demo_path(name))
        assert {v.dtype for v in ck.state_dict.values() if v.is_floating_point()} == {torch.float16}
        total += demo_path(name).stat().st_size
        opts = method_options(name, {"*": {"tile": 8}})
        m = build_method(name, MethodContext(4, options=opts))
        out = m(torch.rand(1, 3, 8, 8), ["x"])
        assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
    assert total < 10e6
    # The shipped SR3 diffuses the residual over the upsampled LR (MODEL_CARD.md: why), with the tiny U-Net.
    from baselines.sr3.method import load_sr3

    model, sampling = load_sr3(demo_path("sr3-demo"))
    assert model.cfg.residual == 12.0 and model.cfg.unet.width == 16 and sampling.sampler == "ancestral"
    sr3 = build_method("sr3-demo", MethodContext(4, options=method_options("sr3-demo", {})))
    assert sr3.info["steps"] == DEMO_STEPS and sr3.info["sampler"] == "ddim"  # the demo's fast setting


def test_demo_models_join_the_default_methods_of_4x_tasks_only():
    assert {"sr3-demo", "regression-demo"} <= set(default_methods(resolve_task("imagenet-64-256"), log=lambda m: None))
    assert not {"sr3-demo", "regression-demo"} & set(default_methods(resolve_task(None, 2), log=lambda m: None))
