"""Shared test fixtures: small real photos (from scikit-image's wheel) and a quiet, 2-core-friendly torch."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Runs register themselves in the results index under $EVALSUITE_HOME: never the user's ~/.evalsuite from
# tests (subprocesses inherit it too).
os.environ["EVALSUITE_HOME"] = tempfile.mkdtemp(prefix="evalsuite-home-")
atexit.register(shutil.rmtree, os.environ["EVALSUITE_HOME"], ignore_errors=True)
os.environ.pop("EVALSUITE_INDEX_URL", None)

# One intra-op thread: tests use tiny tensors, and on a busy 2-core machine two OpenMP threads per
# process run many times slower than one.
torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def gan_weights_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fresh weights folder for every GAN test (weights converted once per session); the npm model
    package is linked from the user cache (fetched once)."""
    from baselines.gan.convert_tfjs import PACKAGE_FOLDER, npm_package_dir
    from evalsuite.paths import cache_dir

    shared = cache_dir("weights", "npm")
    try:
        npm_package_dir(shared)
    except RuntimeError as exc:
        pytest.skip(f"@upscalerjs/esrgan-thick unavailable: {exc}")
    folder = tmp_path_factory.mktemp("weights")
    (folder / "npm").mkdir()
    (folder / "npm" / PACKAGE_FOLDER).symlink_to(shared / PACKAGE_FOLDER)
    return folder


@pytest.fixture()
def gan_weights(gan_weights_folder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """EVALSUITE_WEIGHTS pointed at the GAN tests' folder for one test."""
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(gan_weights_folder))
    return gan_weights_folder


# --------------------------------------------------------------------------- study databases
@pytest.fixture(scope="module")
def pg_server():
    """A throwaway PostgreSQL server for one test module (skipped without the server binaries)."""
    from study_support import postgres_bin, postgres_server

    if postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries not found (Debian package postgresql; scripts/setup-system.sh)")
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> str:
    """A fresh study database: a SQLite file, then a new database on the module's PostgreSQL server."""
    import uuid

    from study_support import fresh_postgres_database

    if request.param == "sqlite":
        return str(tmp_path / "study.db")
    return fresh_postgres_database(request.getfixturevalue("pg_server"), f"t_{uuid.uuid4().hex[:12]}")
