"""Sample diversity (the SR3 paper's own caveat: its samples barely vary for one input).

With `--samples K` a stochastic method draws K outputs per image (per-sample seeds from the image id);
these metrics see all K through `update_samples(samples (K,B,3,H,W), hr, lr, ids)`. A deterministic method
scores 0 without being run K times. Low diversity means the model ignores most of the plausible outputs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch

from evalsuite.metrics.base import Column, MetricContext, MetricInfo, MetricValue, register
from evalsuite.metrics.perceptual import LPIPS, LPIPSOptions, lpips_min_size


class Diversity:
    """Mean over pixels of the per-pixel standard deviation across the K samples, on [0,1]."""

    def __init__(self, ctx: MetricContext) -> None:
        self.ctx = ctx

    def update_samples(
        self, samples: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """(K,B,3,H,W) samples -> per-image diversity (B,)."""
        if samples.shape[0] < 2:
            return {"diversity": torch.zeros(samples.shape[1])}
        # Population standard deviation over the K samples, per pixel and channel, then the mean.
        std = samples.float().std(dim=0, unbiased=False)  # (B,3,H,W)
        return {"diversity": std.mean(dim=(1, 2, 3)).cpu()}

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """One sample has no spread."""
        return self.update_samples(sr[None], hr, lr, ids)

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: the runner averages the per-image values."""
        return {}


class LPIPSDiversity(Diversity):
    """Mean pairwise LPIPS between the K samples of an image (needs LPIPS's backbone weights)."""

    def __init__(self, ctx: MetricContext) -> None:
        super().__init__(ctx)
        self.lpips = LPIPS(ctx)  # raises MissingWeightsError offline: the column is left empty with a note
        self.nonstandard = self.lpips.nonstandard

    def update_samples(
        self, samples: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """(K,B,3,H,W) samples -> per-image mean LPIPS over the K(K-1)/2 pairs (B,)."""
        k = samples.shape[0]
        if k < 2:
            return {"lpips_diversity": torch.zeros(samples.shape[1])}
        pairs = list(itertools.combinations(range(k), 2))
        d = [self.lpips.update(samples[a], samples[b], lr, ids)["lpips"] for a, b in pairs]
        return {"lpips_diversity": torch.stack(d).mean(dim=0)}


register(
    MetricInfo(
        name="diversity",
        factory=Diversity,
        columns=(
            Column(
                "diversity",
                "Diversity (std, [0,1])",
                "Diversity",
                "mean per-pixel standard deviation across the K samples of an image",
                None,  # more spread is not better in itself (noise spreads too)
            ),
        ),
        help="mean per-pixel std across --samples K outputs on [0,1] (0 = one output for every draw)",
        source="evalsuite (SR3's own caveat: its samples barely vary for one input)",
        needs="--samples K >= 2",
        full_reference=False,
        uses_samples=True,
    )
)
register(
    MetricInfo(
        name="lpips_diversity",
        factory=LPIPSDiversity,
        columns=(
            Column(
                "lpips_diversity",
                "LPIPS diversity",
                "LPIPS div.",
                "mean pairwise LPIPS between the K samples of an image",
                None,
            ),
        ),
        help="mean pairwise LPIPS between the --samples K outputs (0 = identical samples)",
        source="evalsuite, LPIPS as the lpips metric computes it",
        needs="--samples K >= 2 and LPIPS's backbone weights",
        full_reference=False,
        uses_samples=True,
        options=LPIPSOptions,
        min_size=lpips_min_size,
    )
)
