"""evalsuite: a benchmark and human-evaluation harness for image super-resolution (SR3 protocol).

Python API: `evalsuite.run(spec) -> Results`, with `Results.summary` and `Results.per_image` DataFrames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["BenchmarkSpec", "Results", "run"]

if TYPE_CHECKING:
    from evalsuite.results import Results
    from evalsuite.spec import BenchmarkSpec


def run(spec: BenchmarkSpec | dict[str, Any] | str, **kwargs: Any) -> Results:
    """Run a benchmark (a BenchmarkSpec, a dict of its fields, or a YAML file path) and return its Results."""
    from evalsuite.runner import run as _run
    from evalsuite.spec import BenchmarkSpec

    if isinstance(spec, dict):
        spec = BenchmarkSpec.from_dict(spec)
    elif isinstance(spec, str):
        spec = BenchmarkSpec.from_yaml(spec)
    return _run(spec, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "BenchmarkSpec":
        from evalsuite.spec import BenchmarkSpec

        return BenchmarkSpec
    if name == "Results":
        from evalsuite.results import Results

        return Results
    raise AttributeError(name)
