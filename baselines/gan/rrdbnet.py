"""RRDBNet, the ESRGAN / Real-ESRGAN generator (Wang et al. 2018, 2021), with the official parameter names.

The module and parameter names are those of the official Real-ESRGAN / BasicSR `RRDBNet` (`conv_first`,
`body.N.rdb1.conv1`, ..., `conv_up1`, `conv_hr`, `conv_last`), so an official `.pth` loads as it is and
spandrel recognises checkpoints saved from it. Scales 2 and 4 follow the official model (x2 packs the
input with pixel-unshuffle); 8 adds a third nearest-upsample + conv stage (`conv_up3`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class RRDBNetConfig:
    """Size of an RRDBNet; the defaults are Real-ESRGAN x4plus (16.7M parameters)."""

    scale: int = 4
    num_in_ch: int = 3
    num_out_ch: int = 3
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32

    def __post_init__(self) -> None:
        if self.scale not in (1, 2, 4, 8):
            raise ValueError(f"RRDBNet supports scales 1, 2, 4 and 8, got {self.scale}")

    def to_dict(self) -> dict[str, int]:
        """Plain dict (for checkpoint metadata)."""
        return asdict(self)


def unshuffle_factor(scale: int) -> int:
    """How much the input is pixel-unshuffled first: x1 by 4 and x2 by 2, as the official model does."""
    return {1: 4, 2: 2}.get(scale, 1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; the output is scaled by 0.2 and added to the input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        g = num_grow_ch
        self.conv1 = nn.Conv2d(num_feat, g, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + g, g, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * g, g, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * g, g, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * g, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,F,h,w) -> (B,F,h,w)."""
        # Each conv sees the block input and every earlier conv's output (dense connections).
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        # Residual scaling by beta = 0.2.
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks and a scaled skip connection."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,F,h,w) -> (B,F,h,w)."""
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * 0.2 + x


class RRDBNet(nn.Module):
    """The ESRGAN generator: (B,3,h,w) in [0,1] -> (B,3,h*scale,w*scale), unclamped."""

    def __init__(self, cfg: RRDBNetConfig = RRDBNetConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        nf = cfg.num_feat
        self.unshuffle = unshuffle_factor(cfg.scale)
        self.conv_first = nn.Conv2d(cfg.num_in_ch * self.unshuffle**2, nf, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(nf, cfg.num_grow_ch) for _ in range(cfg.num_block)])
        self.conv_body = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_up3 = nn.Conv2d(nf, nf, 3, 1, 1) if cfg.scale == 8 else None
        self.conv_hr = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, cfg.num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    @property
    def scale(self) -> int:
        """The upscaling factor."""
        return self.cfg.scale

    def forward(self, x_lr: torch.Tensor) -> torch.Tensor:
        """(B,3,h,w) -> (B,3,h*scale,w*scale)."""
        u, (h, w) = self.unshuffle, x_lr.shape[-2:]
        if u > 1 and (h % u or w % u):
            # Pixel-unshuffle needs sizes divisible by u: pad by replication, crop the output back.
            x = F.pad(x_lr, (0, -w % u, 0, -h % u), mode="replicate")
            return self.forward(x)[..., : h * self.scale, : w * self.scale]
        feat = F.pixel_unshuffle(x_lr, u) if u > 1 else x_lr
        # Shallow features, then the RRDB trunk with a long skip connection.
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        # Upsampling: nearest x2 then a conv, two (or three for x8) times.
        ups = [self.conv_up1, self.conv_up2] + ([self.conv_up3] if self.conv_up3 is not None else [])
        for conv in ups:
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


def config_from_state_dict(state: dict[str, torch.Tensor]) -> RRDBNetConfig:
    """Infer an RRDBNet's size from its state dict (as saved by the official code or by this module)."""
    if "conv_first.weight" not in state or "body.0.rdb1.conv1.weight" not in state:
        raise ValueError("not an RRDBNet state dict (expected keys conv_first.*, body.N.rdb1.conv1.*)")
    first = state["conv_first.weight"]
    num_feat, in_packed = first.shape[0], first.shape[1]
    num_grow_ch = state["body.0.rdb1.conv1.weight"].shape[0]
    num_block = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("body."))
    num_out_ch = state["conv_last.weight"].shape[0]
    if "conv_up3.weight" in state:
        scale, num_in_ch = 8, in_packed
    elif in_packed % 16 == 0 and in_packed // 16 in (1, 3, 4):
        scale, num_in_ch = 1, in_packed // 16
    elif in_packed % 4 == 0 and in_packed // 4 in (1, 3):
        scale, num_in_ch = 2, in_packed // 4
    else:
        scale, num_in_ch = 4, in_packed
    return RRDBNetConfig(scale, num_in_ch, num_out_ch, num_feat, num_block, num_grow_ch)


def unwrap_state_dict(obj: object, path: Path | str = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The generator weights inside an official `.pth` ({'params_ema': ...} or {'params': ...}) or a bare dict."""
    if isinstance(obj, dict):
        for key in ("params_ema", "params", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                return unwrap_state_dict(obj[key], path)
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            # Checkpoints saved from DataParallel prefix every key with "module.".
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise ValueError(f"{path}: no state dict found (expected a dict of tensors, or one under 'params_ema'/'params')")


def load_rrdbnet(path: Path | str, map_location: str | torch.device = "cpu") -> RRDBNet:
    """Load an RRDBNet from an official `.pth` or a `.safetensors` file; the size is read from the weights."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device=str(map_location))
    else:
        state = unwrap_state_dict(torch.load(path, map_location=map_location, weights_only=True), path)
    try:
        model = RRDBNet(config_from_state_dict(state))
        model.load_state_dict(state, strict=True)
    except (ValueError, RuntimeError) as exc:
        raise ValueError(f"{path}: cannot load as RRDBNet: {exc}") from exc
    return model.eval()
