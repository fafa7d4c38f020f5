"""The SR3 U-Net (shared by SR3 and the regression baseline).

DDPM's U-Net with BigGAN-style residual blocks (up/down-sampling inside residual blocks, FiLM scale-shift
of the noise-level embedding), residual and skip connections rescaled by 1/sqrt(2), attention at chosen
resolutions and in the middle block. Input: concat(upsample(x_lr), y_t) on channels (6 channels); the
noise condition is a continuous scalar per example (γ or log-SNR, chosen by the SR3 wrapper), embedded
with sinusoidal features of `noise_scale * c` so that they vary over the condition's whole range.

`janspiry-16-128` and `janspiry-64-512` are the popular public re-implementation's networks (conv
up/down-sampling, one-head attention without qkv bias, additive embedding of width `width` projected without
an activation): 97.8M and 155.3M parameters; `baselines.sr3.janspiry` imports that code's checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the U-Net; `image_size` (HR training side) only places attention by resolution."""

    in_channels: int = 6
    out_channels: int = 3
    width: int = 64
    mults: tuple[int, ...] = (1, 2, 4, 8, 8)
    res_blocks: int = 2
    attn_res: tuple[int, ...] = (16,)
    mid_attn: bool = True
    dropout: float = 0.0
    image_size: int = 128
    groups: int = 32
    head_channels: int = 64  # attention head width (heads = channels // head_channels, at least 1)
    biggan_updown: bool = True  # up/down-sampling inside residual blocks (BigGAN); False: conv layers (DDPM)
    scale_shift: bool = True  # FiLM (scale, shift) of the embedding in each residual block; False: additive
    skip_rescale: bool = True  # (skip(x) + h) / sqrt(2) in residual and attention blocks
    emb_mult: int = 4  # embedding width = width * emb_mult
    emb_act: bool = True  # SiLU on the embedding before each block's projection; False: the public code's layout
    noise_scale: float = 1000.0  # sinusoidal features of noise_scale * c
    num_classes: int = 0  # > 0: a learned class embedding added to the noise embedding (class-conditional base)
    aug_embedding: bool = False  # an embedding of the conditioning-augmentation level added to the noise embedding

    @property
    def multiple(self) -> int:
        """Input sides (H, W) must be multiples of this: 2 ** (number of down-samplings)."""
        return 2 ** (len(self.mults) - 1)


# The public re-implementation's layout: conv resampling, additive embedding of width `width` projected without
# an activation, one attention head without qkv bias, no 1/sqrt(2) rescaling.
JANSPIRY_LAYOUT: dict[str, Any] = {
    "biggan_updown": False,
    "scale_shift": False,
    "skip_rescale": False,
    "emb_mult": 1,
    "head_channels": 0,
    "emb_act": False,
}

PRESETS: dict[str, UNetConfig] = {
    # The SR3 paper's sizes (protocols.md).
    "paper-16-128": UNetConfig(
        width=128, mults=(1, 2, 4, 8, 8), res_blocks=3, attn_res=(16,), dropout=0.2, image_size=128
    ),
    "paper-64-256": UNetConfig(
        width=128, mults=(1, 2, 4, 4, 8, 8), res_blocks=3, attn_res=(16,), dropout=0.0, image_size=256
    ),
    "paper-64-512": UNetConfig(
        width=64, mults=(1, 2, 4, 8, 8, 16, 16), res_blocks=3, attn_res=(16,), dropout=0.0, image_size=512
    ),
    "paper-256-1024": UNetConfig(
        width=16,
        mults=(1, 2, 4, 8, 16, 32, 32, 32),
        res_blocks=2,
        attn_res=(16,),
        groups=16,
        dropout=0.0,
        image_size=1024,
    ),
    # The public re-implementation (Janspiry) at 16->128 (97.8M) and 64->512 (155.3M; attention in the middle only).
    "janspiry-16-128": UNetConfig(
        width=64, mults=(1, 2, 4, 8, 8), res_blocks=2, attn_res=(16,), dropout=0.2, image_size=128, **JANSPIRY_LAYOUT
    ),
    "janspiry-64-512": UNetConfig(
        width=64, mults=(1, 2, 4, 8, 16), res_blocks=1, attn_res=(), image_size=512, groups=16, **JANSPIRY_LAYOUT
    ),
    # Trains in minutes on one GPU (20.7M parameters).
    "small": UNetConfig(width=64, mults=(1, 2, 2, 4), res_blocks=2, attn_res=(16,), dropout=0.0, image_size=128),
    # For CPU tests and short CPU runs.
    "tiny": UNetConfig(
        width=16,
        mults=(1, 2, 2),
        res_blocks=1,
        attn_res=(),
        mid_attn=False,
        dropout=0.0,
        image_size=32,
        groups=8,
        emb_mult=2,
    ),
}


def preset(name: str, **changes: object) -> UNetConfig:
    """A named preset, optionally with some fields changed."""
    if name not in PRESETS:
        raise ValueError(f"unknown U-Net preset {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **changes)


def training_preset(name: str, crop: int, dropout: float = -1.0, width: int = 0) -> UNetConfig:
    """A preset for `crop` px training crops (dropout < 0, width 0: the preset's); the crop must fit the U-Net."""
    changes: dict[str, object] = {"image_size": crop}
    if dropout >= 0:
        changes["dropout"] = dropout
    if width:
        changes["width"] = width
    cfg = preset(name, **changes)
    if width < 0 or cfg.width % cfg.groups:
        raise ValueError(f"width {width} must be a positive multiple of preset {name}'s {cfg.groups} norm groups")
    if crop % cfg.multiple:
        raise ValueError(f"--crop {crop} must be a multiple of {cfg.multiple} for preset {name}")
    return cfg


def unet_config_from_dict(d: dict) -> UNetConfig:
    """Rebuild a UNetConfig from its JSON dict (lists back to tuples)."""
    fields = UNetConfig.__dataclass_fields__
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise ValueError(f"unknown U-Net config keys {unknown}; known: {sorted(fields)}")
    return UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def sinusoidal(c: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal features of a (B,) float tensor -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=c.device, dtype=torch.float32) / half)
    args = c.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, ch), ch)


class ResBlock(nn.Module):
    """BigGAN-style residual block with the noise embedding (FiLM or additive), optional up/down-sampling."""

    def __init__(self, cin: int, cout: int, emb: int, cfg: UNetConfig, up: bool = False, down: bool = False):
        """A block from `cin` to `cout` channels; `up`/`down` resample by 2 inside the block."""
        super().__init__()
        self.up, self.down, self.cfg = up, down, cfg
        self.norm1 = _norm(cin, cfg.groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout * (2 if cfg.scale_shift else 1))
        self.norm2 = _norm(cout, cfg.groups)
        self.dropout = nn.Dropout(cfg.dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """(B,cin,H,W), (B,emb) -> (B,cout,H',W')."""
        # h = conv1(resample(act(norm1(x)))): BigGAN resamples between the activation and the conv.
        h = F.silu(self.norm1(x))
        h = self.conv1(self._resample(h))
        x = self._resample(x)
        # Noise embedding (through SiLU unless emb_act is off): FiLM (1 + scale, shift) after norm2, or added before it.
        e = self.emb(F.silu(emb) if self.cfg.emb_act else emb)[:, :, None, None]
        if self.cfg.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        out = self.skip(x) + h
        # Skip connections rescaled by 1/sqrt(2) (SR3, following BigGAN / NCSN++).
        return out / math.sqrt(2.0) if self.cfg.skip_rescale else out


class Attention(nn.Module):
    """Multi-head self-attention over positions with a residual connection."""

    def __init__(self, ch: int, cfg: UNetConfig):
        """Attention for `ch` channels."""
        super().__init__()
        self.heads = max(1, ch // cfg.head_channels) if cfg.head_channels > 0 else 1
        self.norm = _norm(ch, cfg.groups)
        self.qkv = nn.Conv2d(ch, ch * 3, 1, bias=cfg.biggan_updown)
        self.proj = nn.Conv2d(ch, ch, 1)
        self.skip_rescale = cfg.skip_rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) -> (B,C,H,W)."""
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        # (B, heads, HW, d): scaled dot-product attention over the H*W positions.
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        out = self.proj(out.transpose(-1, -2).reshape(b, c, h, w))
        return (x + out) / math.sqrt(2.0) if self.skip_rescale else x + out


class _Level(nn.Module):
    def __init__(self, block: ResBlock, attn: Attention | None):
        super().__init__()
        self.block, self.attn = block, attn

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.block(x, emb)
        return self.attn(x) if self.attn is not None else x


class UNet(nn.Module):
    """The SR3 U-Net: (B,6,H,W) = concat(x_up, y_t) and a (B,) noise condition -> (B,3,H,W)."""

    def __init__(self, cfg: UNetConfig):
        """Build from a config; H and W of inputs must be multiples of `cfg.multiple`."""
        super().__init__()
        self.cfg = cfg
        w, emb = cfg.width, cfg.width * cfg.emb_mult
        hidden = cfg.width * 4
        self.emb_mlp = nn.Sequential(nn.Linear(w, hidden), nn.SiLU(), nn.Linear(hidden, emb))
        # Optional conditions added to the noise embedding: the class (CDM's class-conditional base) and the
        # level of the noise augmentation of the LR input (CDM); the latter starts at exactly zero.
        self.class_emb = nn.Embedding(cfg.num_classes, emb) if cfg.num_classes > 0 else None
        self.aug_mlp = None
        if cfg.aug_embedding:
            self.aug_mlp = nn.Sequential(nn.Linear(w, hidden), nn.SiLU(), nn.Linear(hidden, emb))
            nn.init.zeros_(self.aug_mlp[2].weight)
            nn.init.zeros_(self.aug_mlp[2].bias)
        self.stem = nn.Conv2d(cfg.in_channels, w, 3, padding=1)
        chans, ch, res = [w], w, cfg.image_size
        self.down = nn.ModuleList()
        # Encoder: res_blocks blocks per level, then a down-sampling (BigGAN block or strided conv).
        for i, m in enumerate(cfg.mults):
            for _ in range(cfg.res_blocks):
                attn = Attention(w * m, cfg) if res in cfg.attn_res else None
                self.down.append(_Level(ResBlock(ch, w * m, emb, cfg), attn))
                ch = w * m
                chans.append(ch)
            if i < len(cfg.mults) - 1:
                if cfg.biggan_updown:
                    self.down.append(_Level(ResBlock(ch, ch, emb, cfg, down=True), None))
                else:
                    self.down.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                chans.append(ch)
                res //= 2
        # Middle: block, attention (optional), block.
        self.mid1 = ResBlock(ch, ch, emb, cfg)
        self.mid_attn = Attention(ch, cfg) if cfg.mid_attn else None
        self.mid2 = ResBlock(ch, ch, emb, cfg)
        # Decoder: res_blocks + 1 blocks per level, each taking one encoder skip, then an up-sampling.
        self.up = nn.ModuleList()
        self.up_is_resample: list[bool] = []
        for i, m in reversed(list(enumerate(cfg.mults))):
            for _ in range(cfg.res_blocks + 1):
                attn = Attention(w * m, cfg) if res in cfg.attn_res else None
                self.up.append(_Level(ResBlock(ch + chans.pop(), w * m, emb, cfg), attn))
                self.up_is_resample.append(False)
                ch = w * m
            if i > 0:
                if cfg.biggan_updown:
                    self.up.append(_Level(ResBlock(ch, ch, emb, cfg, up=True), None))
                else:
                    self.up.append(
                        nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1))
                    )
                self.up_is_resample.append(True)
                res *= 2
        self.out = nn.Sequential(_norm(ch, cfg.groups), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1))

    def forward(
        self,
        x: torch.Tensor,
        c: torch.Tensor,
        labels: torch.Tensor | None = None,
        aug: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B,in_channels,H,W), e.g. concat(x_up, y_t); c: (B,) noise condition; labels: (B,) class ids
        (with num_classes); aug: (B,) augmentation level (with aug_embedding, default 0) -> (B,3,H,W)."""
        # Noise-level embedding: sinusoidal features of noise_scale * c, then an MLP.
        emb = self.emb_mlp(sinusoidal(c * self.cfg.noise_scale, self.cfg.width).to(x.dtype))
        # Class embedding added to the noise embedding (class-conditional generation).
        if self.class_emb is not None:
            if labels is None:
                raise ValueError(f"this U-Net is class-conditional ({self.cfg.num_classes} classes): pass labels")
            emb = emb + self.class_emb(labels.long()).to(emb.dtype)
        # Augmentation-level embedding (sin/cos of 1000 * level), added the same way.
        if self.aug_mlp is not None:
            a = aug if aug is not None else torch.zeros_like(c, dtype=torch.float32)
            emb = emb + self.aug_mlp(sinusoidal(a * 1000.0, self.cfg.width).to(x.dtype))
        h = self.stem(x)
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, _Level) else layer(h)
            skips.append(h)
        h = self.mid1(h, emb)
        if self.mid_attn is not None:
            h = self.mid_attn(h)
        h = self.mid2(h, emb)
        for layer, is_resample in zip(self.up, self.up_is_resample, strict=True):
            if is_resample:
                h = layer(h, emb) if isinstance(layer, _Level) else layer(h)
            else:
                h = layer(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters."""
    return sum(p.numel() for p in module.parameters())
