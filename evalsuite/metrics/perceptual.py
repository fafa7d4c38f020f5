"""LPIPS and DISTS: published heads from their wheels, the ImageNet backbones from our weights folder.

`lpips.LPIPS(pretrained=True)` would fetch the AlexNet/VGG backbone through torchvision into torch hub's
cache; here the backbone is built empty (`pnet_rand=True`, nothing downloaded) and filled from the
registered file (`alexnet-owt-7be5be79.pth` / `vgg16-397923af.pth`), or the metric is not computed.
DISTS (Ding et al. 2020) takes its alpha/beta from the DISTS-pytorch wheel (copied into the weights folder
as `dists_weights.pt`) and the same VGG-16 file; nothing is downloaded either.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from evalsuite.metrics.base import Column, MetricContext, MetricInfo, MetricValue, register
from evalsuite.metrics.weights import checked_weight

NETS = ("alex", "vgg")
# The smallest side each LPIPS backbone accepts (AlexNet's stride-4 stem and two max-pools; VGG's four pools).
LPIPS_MIN_SIDE = {"alex": 31, "vgg": 16}


def lpips_min_size(ctx: MetricContext) -> int:
    """The smallest HR side (px) the `lpips_net` backbone of the context's options accepts."""
    return LPIPS_MIN_SIDE[ctx.options_of(LPIPSOptions).lpips_net.lower()]


@dataclass(frozen=True)
class LPIPSOptions:
    """`metric_options` of LPIPS."""

    lpips_net: str = "alex"  # alex | vgg

    def __post_init__(self) -> None:
        if self.lpips_net.lower() not in NETS:
            raise ValueError(f"lpips_net must be one of {', '.join(NETS)}, got {self.lpips_net!r}")


def load_backbone(net: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Fill lpips' sliced torchvision backbone (`sliceK.<i>.weight`) from torchvision's `features.<i>.weight`."""
    own = net.state_dict()
    mapped = {}
    for key in own:
        _, index, kind = key.split(".")
        src = f"features.{index}.{kind}"
        if src not in state:
            raise ValueError(f"{source} has no {src}: it is not a torchvision backbone for this LPIPS network")
        if state[src].shape != own[key].shape:
            raise ValueError(f"{source}: {src} has shape {tuple(state[src].shape)}, expected {tuple(own[key].shape)}")
        mapped[key] = state[src]
    net.load_state_dict(mapped, strict=True)


class LPIPS:
    """LPIPS distance to the HR image (v0.1 linear heads; AlexNet by default, VGG with lpips_net=vgg)."""

    def __init__(self, ctx: MetricContext) -> None:
        import lpips

        self.ctx = ctx
        net = ctx.options_of(LPIPSOptions).lpips_net.lower()
        self.weight = checked_weight(f"lpips-{net}", "LPIPS", ctx.options)
        # The wheel's linear heads, an empty backbone (no download), then the backbone from the weights file.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained=` deprecation notice
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        state = torch.load(self.weight.path, map_location="cpu", weights_only=True)
        load_backbone(model.net, state, str(self.weight.path))
        self.model = model.to(ctx.device).eval().requires_grad_(False)
        self.nonstandard = self.weight.note  # the runner marks every stored value with it
        if self.weight.note:
            ctx.log(f"warning: lpips: {self.weight.note}")

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Per-image LPIPS (B,) between SR and HR, both mapped from [0,1] to lpips' [-1,1]."""
        with torch.no_grad():
            d = self.model(sr.float() * 2 - 1, hr.float() * 2 - 1)  # (B,1,1,1)
        return {"lpips": d.reshape(-1).float().cpu()}

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: the runner averages the per-image values."""
        return {}


class _L2Pool(torch.nn.Module):
    """DISTS' L2 pooling in place of VGG's max-pools: sqrt of a 3x3 Hann-weighted mean of squares, stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([0.5, 1.0, 0.5])  # a 5-tap Hann window without its zero ends
        window = taps[:, None] * taps[None, :]
        self.register_buffer("window", (window / window.sum()).expand(channels, 1, 3, 3).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.conv2d(x.square(), self.window, stride=2, padding=1, groups=x.shape[1])
        return (pooled + 1e-12).sqrt()


# VGG-16 `features` indices of each DISTS stage (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3); each stage
# after the first starts with an L2 pool where VGG has its max-pool.
DISTS_STAGES = ((0, 4), (5, 9), (10, 16), (17, 23), (24, 30))
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)  # the image itself, then each stage's output


class DISTSNet(torch.nn.Module):
    """DISTS: weighted structure and texture similarity of VGG-16 feature maps (Ding et al. 2020, eq. 7-9)."""

    def __init__(self, vgg_state: dict[str, torch.Tensor], alpha: torch.Tensor, beta: torch.Tensor) -> None:
        super().__init__()
        from torchvision.models import vgg

        # Only the convolutional trunk is used (built alone, uninitialized: the file fills every tensor).
        with torch.device("meta"):
            trunk = vgg.make_layers(vgg.cfgs["D"])
        own = {f"features.{k}": v for k, v in trunk.state_dict().items()}
        missing = sorted(set(own) - set(vgg_state))
        if missing:
            raise ValueError(f"the VGG-16 file has no {missing[0]}: it is not torchvision's VGG-16")
        trunk.load_state_dict({k.removeprefix("features."): vgg_state[k] for k in own}, strict=True, assign=True)
        stages = []
        for k, (a, b) in enumerate(DISTS_STAGES):
            layers = [trunk[i] for i in range(a, b)]
            if k:
                layers.insert(0, _L2Pool(DISTS_CHANNELS[k]))
            stages.append(torch.nn.Sequential(*layers))
        self.stages = torch.nn.ModuleList(stages)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        # The published weights, normalized to sum to 1 over both terms.
        total = alpha.sum() + beta.sum()
        self.register_buffer("alpha", (alpha / total).reshape(-1))
        self.register_buffer("beta", (beta / total).reshape(-1))

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The image and the five stage outputs."""
        out, h = [x], (x - self.mean) / self.std
        for stage in self.stages:
            h = stage(h)
            out.append(h)
        return out

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """DISTS (B,) between x and y in [0,1]."""
        c1 = c2 = 1e-6
        score = torch.zeros(x.shape[0], device=x.device)
        offset = 0
        for fx, fy in zip(self.features(x), self.features(y)):
            n = fx.shape[1]
            # Texture: per-channel means; structure: per-channel variances and covariance over positions.
            mx, my = fx.mean((2, 3)), fy.mean((2, 3))
            vx = (fx - mx[..., None, None]).square().mean((2, 3))
            vy = (fy - my[..., None, None]).square().mean((2, 3))
            cov = (fx * fy).mean((2, 3)) - mx * my
            texture = (2 * mx * my + c1) / (mx.square() + my.square() + c1)
            structure = (2 * cov + c2) / (vx + vy + c2)
            a, b = self.alpha[offset : offset + n], self.beta[offset : offset + n]
            score = score + (texture * a).sum(1) + (structure * b).sum(1)
            offset += n
        return 1 - score


class DISTS:
    """DISTS distance to the HR image: published alpha/beta, torchvision's VGG-16 from the weights folder."""

    def __init__(self, ctx: MetricContext) -> None:
        self.ctx = ctx
        backbone = checked_weight("lpips-vgg", "DISTS", ctx.options)
        heads = checked_weight("dists-alpha-beta", "DISTS", ctx.options)
        ab = torch.load(heads.path, map_location="cpu", weights_only=True)
        state = torch.load(backbone.path, map_location="cpu", weights_only=True)
        self.model = DISTSNet(state, ab["alpha"], ab["beta"]).to(ctx.device).eval().requires_grad_(False)
        self.nonstandard = "; ".join(w.note for w in (backbone, heads) if w.note)  # marks every stored value
        for w in (backbone, heads):
            if w.note:
                ctx.log(f"warning: dists: {w.note}")

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Per-image DISTS (B,) between SR and HR in [0,1], at full resolution."""
        with torch.no_grad():
            d = self.model(sr.float(), hr.float())
        return {"dists": d.float().cpu()}

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: the runner averages the per-image values."""
        return {}


register(
    MetricInfo(
        name="lpips",
        factory=LPIPS,
        columns=(Column("lpips", "LPIPS", "LPIPS", "learned perceptual distance to the HR image", False),),
        help="LPIPS distance to HR (lower)",
        source="lpips 0.1 (Zhang et al. 2018) linear heads from the wheel; torchvision backbone",
        needs="alexnet-owt-7be5be79.pth (lpips-alex) or vgg16-397923af.pth (lpips-vgg)",
        options=LPIPSOptions,
        min_size=lpips_min_size,
    )
)
register(
    MetricInfo(
        name="dists",
        factory=DISTS,
        columns=(
            Column("dists", "DISTS", "DISTS", "VGG-16 structure and texture distance to the HR image", False),
        ),
        help="DISTS distance to HR (lower)",
        source="Ding et al. 2020; alpha/beta from the DISTS-pytorch wheel, checked against its DISTS_pt",
        needs="vgg16-397923af.pth (lpips-vgg) and dists_weights.pt (dists-alpha-beta, from the DISTS-pytorch wheel)",
    )
)
