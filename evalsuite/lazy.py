"""Objects named as "module:attribute" strings, imported only when used (registries stay cheap to load)."""

from __future__ import annotations

import importlib
from typing import Any


def load_object(target: str) -> Any:
    """The attribute named by "module:attribute", importing the module."""
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected 'module:attribute', got {target!r}")
    return getattr(importlib.import_module(module), attr)
