"""Test-only methods, registered through $EVALSUITE_PLUGINS (the same hook users have for their own methods)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

from evalsuite.degrade import upsample
from evalsuite.methods import register


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
