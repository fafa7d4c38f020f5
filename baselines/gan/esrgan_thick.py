"""RRDN, the generator of the `@upscalerjs/esrgan-thick` TensorFlow.js models (idealo's ISR "RRDN"), in PyTorch.

Layout of the Keras model (names in brackets): a 3x3 conv to G0 features [Pre_blocks_conv]; T RRDBs, each
of D dense blocks of C conv+ReLU layers of G channels [F_t_d_c] fused by a 3x3 conv to G0 [LFF_t_d],
added back with residual scaling beta = 0.2 [LRL_t_d], then the RRDB's own scaled skip [RRDB_t_out]; a
3x3 conv [post_blocks_conv] and the global residual [GRL]; a 3x3 conv to 3*s^2 channels [PreShuffle],
depth-to-space by s [PixelShuffle], a final 3x3 conv [SR]. Inputs and outputs are in [0,1]; "thick" is
C=4, D=3, G=32, G0=64, T=10. The converter permutes PreShuffle's channels so that PyTorch's
`pixel_shuffle` reproduces TensorFlow's `depth_to_space`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

BETA = 0.2


@dataclass(frozen=True)
class RRDNConfig:
    """Size of an RRDN; the defaults are esrgan-thick."""

    scale: int = 4
    C: int = 4  # conv layers per dense block
    D: int = 3  # dense blocks per RRDB
    G: int = 32  # growth channels
    G0: int = 64  # feature channels
    T: int = 10  # RRDBs

    def to_dict(self) -> dict[str, int]:
        """Plain dict (for metadata)."""
        return asdict(self)


class DenseBlock(nn.Module):
    """C conv+ReLU layers, each fed the concatenation of all earlier features, fused by a 3x3 conv (LFF)."""

    def __init__(self, cfg: RRDNConfig) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(cfg.G0 + c * cfg.G, cfg.G, 3, 1, 1) for c in range(cfg.C))
        self.lff = nn.Conv2d(cfg.G0 + cfg.C * cfg.G, cfg.G0, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,G0,h,w) -> (B,G0,h,w): the local feature fusion output (before residual scaling)."""
        for conv in self.convs:
            x = torch.cat((x, F.relu(conv(x))), 1)
        return self.lff(x)


class RRDNBlock(nn.Module):
    """D dense blocks with scaled local residuals, then a scaled residual around the whole block."""

    def __init__(self, cfg: RRDNConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(DenseBlock(cfg) for _ in range(cfg.D))

    def forward(self, x_in: torch.Tensor) -> torch.Tensor:
        """(B,G0,h,w) -> (B,G0,h,w)."""
        x = x_in
        for block in self.blocks:
            # LRL_t_d = x + beta * LFF_t_d(x)
            x = x + BETA * block(x)
        # RRDB_t_out = input + beta * x
        return x_in + BETA * x


class RRDN(nn.Module):
    """The esrgan-thick generator: (B,3,h,w) in [0,1] -> (B,3,h*scale,w*scale), unclamped."""

    def __init__(self, cfg: RRDNConfig = RRDNConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.pre_blocks = nn.Conv2d(3, cfg.G0, 3, 1, 1)
        self.rrdbs = nn.Sequential(*[RRDNBlock(cfg) for _ in range(cfg.T)])
        self.post_blocks = nn.Conv2d(cfg.G0, cfg.G0, 3, 1, 1)
        self.pre_shuffle = nn.Conv2d(cfg.G0, 3 * cfg.scale**2, 3, 1, 1)
        self.sr = nn.Conv2d(3, 3, 3, 1, 1)

    @property
    def scale(self) -> int:
        """The upscaling factor."""
        return self.cfg.scale

    def forward(self, x_lr: torch.Tensor) -> torch.Tensor:
        """(B,3,h,w) -> (B,3,h*scale,w*scale)."""
        pre = self.pre_blocks(x_lr)
        # Global residual learning (GRL) around the RRDB trunk.
        grl = self.post_blocks(self.rrdbs(pre)) + pre
        # Sub-pixel upscaling, then the SR conv.
        return self.sr(F.pixel_shuffle(self.pre_shuffle(grl), self.cfg.scale))
