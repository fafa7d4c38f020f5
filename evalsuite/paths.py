"""Where evalsuite keeps caches (weights, reference statistics, materialized demo data)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The cache folder ($EVALSUITE_CACHE, else ~/.cache/evalsuite), with optional sub-folders created."""
    root = Path(os.environ.get("EVALSUITE_CACHE", Path.home() / ".cache" / "evalsuite")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def env_dir(env: str, *default: str) -> Path:
    """The folder $`env` names (created), else the cache sub-folder `default` (`cache_dir(*default)`)."""
    value = os.environ.get(env)
    if value:
        path = Path(value).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return cache_dir(*default)
