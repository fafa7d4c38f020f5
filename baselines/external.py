"""External methods: folders of precomputed outputs (`folder:DIR`); `spandrel:CKPT` lives with the GANs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from evalsuite.datasets import IMAGE_EXTENSIONS, BadImageError, load_rgb
from evalsuite.degrade import to_tensor
from evalsuite.methods import MethodContext


class MissingOutputError(RuntimeError):
    """A precomputed output is missing or unusable for one image."""


@dataclass
class FolderMethod:
    """Reads DIR/<image_id>.<ext> for each image; missing or wrong-size files fail per image."""

    name: str
    scale: int
    folder: Path

    def _find(self, image_id: str) -> Path:
        for ext in IMAGE_EXTENSIONS:
            for cand in (self.folder / f"{image_id}{ext}", self.folder / f"{image_id}{ext.upper()}"):
                if cand.exists():
                    return cand
        raise MissingOutputError(f"no output for image {image_id!r} in {self.folder} (expected {image_id}.png)")

    def __call__(self, x_lr: torch.Tensor, ids: Sequence[str] | None = None) -> torch.Tensor:
        """Load the outputs of `ids`; raises for the first missing or wrong-size one."""
        if ids is None:
            raise ValueError("folder: methods need image ids")
        h, w = x_lr.shape[-2] * self.scale, x_lr.shape[-1] * self.scale
        out = []
        for image_id in ids:
            path = self._find(image_id)
            try:
                t = to_tensor(load_rgb(path))
            except BadImageError as exc:
                raise MissingOutputError(f"{path}: {exc}") from exc
            if t.shape[-2:] != (h, w):
                raise MissingOutputError(f"{path} is {t.shape[-1]}x{t.shape[-2]}, expected {w}x{h} (LR x{self.scale})")
            out.append(t)
        return torch.stack(out).to(x_lr.device)

    @property
    def info(self) -> dict[str, str]:
        """What the report shows about this method."""
        return {"folder": str(self.folder)}


def build_folder(arg: str, ctx: MethodContext) -> FolderMethod:
    """`folder:DIR` factory."""
    folder = Path(arg).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"folder method: {folder} is not a folder of outputs named <image_id>.png")
    return FolderMethod(f"folder:{folder}", ctx.scale, folder)
