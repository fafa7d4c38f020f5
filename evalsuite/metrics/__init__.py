"""Metrics: pixel (PSNR, SSIM, consistency), perceptual (LPIPS), distribution (FID, KID, IS), classification."""

from evalsuite.metrics.base import (
    HIGHER_IS_BETTER,
    METRICS,
    Metric,
    MetricContext,
    MetricValue,
    build_metric,
    resolve_metrics,
)

__all__ = [
    "HIGHER_IS_BETTER",
    "METRICS",
    "Metric",
    "MetricContext",
    "MetricValue",
    "build_metric",
    "resolve_metrics",
]
