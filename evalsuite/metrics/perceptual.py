"""LPIPS through the `lpips` package: its linear heads from the wheel, the backbone from our weights folder.

`lpips.LPIPS(pretrained=True)` would fetch the AlexNet/VGG backbone through torchvision into torch hub's
cache; here the backbone is built empty (`pnet_rand=True`, nothing downloaded) and filled from the
registered file (`alexnet-owt-7be5be79.pth` / `vgg16-397923af.pth`), or the metric is not computed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch

from evalsuite.metrics.base import MetricContext, MetricValue
from evalsuite.metrics.weights import checked_weight

NETS = ("alex", "vgg")


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

    name = "lpips"
    columns = ("lpips",)
    per_image = True

    def __init__(self, ctx: MetricContext) -> None:
        import lpips

        self.ctx = ctx
        net = str(ctx.option("lpips_net", "alex")).lower()
        if net not in NETS:
            raise ValueError(f"lpips_net must be one of {', '.join(NETS)}, got {net!r}")
        self.weight = checked_weight(f"lpips-{net}", "LPIPS", ctx.options)
        # The wheel's linear heads, an empty backbone (no download), then the backbone from the weights file.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained=` deprecation notice
            model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
        state = torch.load(self.weight.path, map_location="cpu", weights_only=True)
        load_backbone(model.net, state, str(self.weight.path))
        self.model = model.to(ctx.device).eval().requires_grad_(False)
        if self.weight.note:
            print(f"warning: lpips: {self.weight.note}")

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
