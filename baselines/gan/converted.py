"""How a converted GAN network is stored: safetensors with its arch, config and origin in the metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_converted(model: Any, dest: Path | str, arch: str, source: str) -> None:
    """Write a converted network (RRDBNet or RRDN) as safetensors, its arch, config and origin in the metadata."""
    from safetensors.torch import save_file

    meta = {"arch": arch, "config": json.dumps(model.cfg.to_dict()), "source": source}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(dest), metadata=meta)
