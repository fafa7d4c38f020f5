"""Number handling shared by the engine and the reports: a value as a finite float, or None."""

from __future__ import annotations

import math
from typing import Any


def finite(v: Any) -> float | None:
    """`v` as a float when it is a finite number, else None (missing, NaN or not a number)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


__all__ = ["finite"]
