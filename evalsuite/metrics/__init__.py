"""Metrics: one declaration each (`MetricInfo`, in its own module), found through `evalsuite.metrics.base`."""

from evalsuite.metrics.base import (
    HIGHER_IS_BETTER,
    Column,
    Metric,
    MetricContext,
    MetricInfo,
    MetricValue,
    build_metric,
    metric_info,
    register,
    registered_metrics,
    resolve_metrics,
)

__all__ = [
    "HIGHER_IS_BETTER",
    "Column",
    "Metric",
    "MetricContext",
    "MetricInfo",
    "MetricValue",
    "build_metric",
    "metric_info",
    "register",
    "registered_metrics",
    "resolve_metrics",
]
