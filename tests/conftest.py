"""Shared test fixtures: small real photos (from scikit-image's wheel) and a quiet, 2-core-friendly torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four real photos (scikit-image's bundled, public domain), shrunk to keep tests fast."""
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        img = Image.fromarray(getattr(data, name)()).convert("RGB")
        img.thumbnail((160, 160), Image.LANCZOS)
        img.save(folder / f"{name}.png")
    return folder


@pytest.fixture()
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(0)
