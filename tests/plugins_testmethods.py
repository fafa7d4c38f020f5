"""Test-only methods, registered through $EVALSUITE_PLUGINS (the same hook users have for their own methods)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from evalsuite.degrade import upsample
from evalsuite.methods import register
from evalsuite.metrics.base import Column, MetricInfo
from evalsuite.metrics.base import register as register_metric_info


@dataclass
class Slow:
    """Bicubic that sleeps, so a test can kill a run mid-way."""

    name: str
    scale: int

    def __call__(self, x_lr, ids=None):
        time.sleep(float(os.environ.get("EVALSUITE_TEST_SLEEP", "0.4")))
        return upsample(x_lr, self.scale)


@dataclass
class NaNOnSome:
    """Bicubic, but NaN for images whose id contains 'coffee'."""

    name: str
    scale: int

    def __call__(self, x_lr, ids=None):
        out = upsample(x_lr, self.scale)
        for k, i in enumerate(ids or []):
            if "coffee" in i:
                out[k, 0, 0, 0] = float("nan")
        return out


@dataclass
class WrongShape:
    """Returns the LR image itself: the wrong shape."""

    name: str
    scale: int

    def __call__(self, x_lr, ids=None):
        return x_lr.clone()


def build(name, ctx):
    """Factory for the test methods."""
    return {"slowbicubic": Slow, "nanmethod": NaNOnSome, "badshape": WrongShape}[name](name, ctx.scale)


def build_broken(arg, ctx):
    """A method whose construction fails."""
    raise FileNotFoundError(f"checkpoint {arg} does not exist")


for _n in ("slowbicubic", "nanmethod", "badshape"):
    register(_n, "plugins_testmethods:build", "test method")
register("broken", "plugins_testmethods:build_broken", "test method", takes_arg=True)
_ = torch


# --- Failure injection for the containment tests: image FAIL_ID fails at one stage. ---------------------
FAIL_ID = "coffee"


@dataclass
class FailOn:
    """Bicubic, but raises for the image FAIL_ID."""

    name: str
    scale: int

    def __call__(self, x_lr, ids=None):
        if FAIL_ID in (ids or []):
            raise RuntimeError(f"injected method failure on {FAIL_ID}")
        return upsample(x_lr, self.scale)


def build_failon(name, ctx):
    """Factory of the failing method."""
    return FailOn(name, ctx.scale)


class PerImageBoom:
    """A per-image metric (mean of SR) whose update raises when FAIL_ID is in the batch."""

    name, columns, per_image = "boom", ("boom",), True

    def __init__(self, ctx):
        self.ctx = ctx

    def update(self, sr, hr, lr, ids):
        if FAIL_ID in ids:
            raise RuntimeError(f"injected update failure on {FAIL_ID}")
        return {"boom": sr.mean(dim=(1, 2, 3))}

    def compute(self):
        return {}


class CountingBoom:
    """A dataset-level metric that counts images; its update raises when FAIL_ID is in the batch."""

    name, columns, per_image = "countboom", ("countboom",), False

    def __init__(self, ctx):
        self.n = 0

    def update(self, sr, hr, lr, ids):
        if FAIL_ID in ids:
            raise RuntimeError(f"injected update failure on {FAIL_ID}")
        self.n += len(ids)

    def compute(self):
        from evalsuite.metrics.base import MetricValue

        return {"countboom": MetricValue(float(self.n))}


class ComputeBoom(CountingBoom):
    """A dataset-level metric whose compute raises."""

    name, columns = "computeboom", ("computeboom",)

    def update(self, sr, hr, lr, ids):
        self.n += len(ids)

    def compute(self):
        raise RuntimeError("injected compute failure")


register("failon", "plugins_testmethods:build_failon", "bicubic that fails on FAIL_ID")


@dataclass
class NoisyBicubic:
    """Bicubic plus noise drawn from the per-image generators: a stochastic method (seeded by image id)."""

    name: str
    scale: int
    stochastic = True
    calls = 0

    def __call__(self, x_lr, ids=None):
        from evalsuite.methods import image_generators

        NoisyBicubic.calls += len(ids)
        up = upsample(x_lr, self.scale)
        gens = image_generators(0, list(ids), up.device)
        noise = torch.stack([torch.randn(up.shape[1:], generator=g) for g in gens])
        return (up + 0.05 * noise).clamp(0, 1)


def build_noisy(name, ctx):
    """Factory of the stochastic test method."""
    return NoisyBicubic(name, ctx.scale)


register("noisybicubic", "plugins_testmethods:build_noisy", "bicubic + seeded noise (stochastic)")


def _test_metric(name: str, factory, per_image: bool, help: str) -> None:
    """Register a test metric (one column named like it, no direction)."""
    column = Column(name, name, name, help, None)
    register_metric_info(MetricInfo(name, factory, (column,), help, "tests", per_image=per_image))


_test_metric("boom", PerImageBoom, True, "test: fails in update")
_test_metric("countboom", CountingBoom, False, "test: fails in update")
_test_metric("computeboom", ComputeBoom, False, "test: fails in compute")
