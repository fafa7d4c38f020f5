"""Every pyiqa (chaofengc/IQA-PyTorch) metric by name: `--metrics pyiqa:musiq,pyiqa:clipiqa,...`.

`pyiqa:NAME` resolves on demand: pyiqa (the optional extra `evalsuite[iqa]`) is imported only then, and
its own model table says whether NAME is full- or no-reference and whether lower is better. The metric is
created lazily on the run's device and fed the batches like any per-image metric (column `pyiqa_NAME`,
crop border applied to both images; colour handling is pyiqa's own). Without pyiqa, or when pyiqa cannot
fetch the metric's weights (offline), the factory raises MissingWeightsError: the column stays empty with
one note saying what to install or which file to put in pyiqa's cache folder, and the run goes on.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata as md
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from evalsuite.metrics.base import Column, MetricContext, MetricInfo, MetricValue, register_prefix
from evalsuite.weights import MissingWeightsError

PREFIX = "pyiqa"
INSTALL = "pip install 'evalsuite[iqa]' (see the Makefile's `iqa` target: pyiqa without its heavy dependencies)"


def pyiqa_version() -> str | None:
    """The installed pyiqa version (None when pyiqa is not installed); nothing is imported."""
    try:
        return md.version("pyiqa")
    except md.PackageNotFoundError:
        return None


def column_of(name: str) -> str:
    """The column of `pyiqa:NAME`."""
    return f"{PREFIX}_{name}"


def _import_pyiqa() -> Any:
    """pyiqa, or MissingWeightsError saying how to install it."""
    try:
        import pyiqa
    except ImportError as exc:
        raise MissingWeightsError(f"pyiqa is not installed ({exc}): {INSTALL}") from exc
    return pyiqa


@contextlib.contextmanager
def _recording_downloads(seen: list[tuple[str, str]]) -> Iterator[None]:
    """Note every (url, file) pyiqa's downloader is asked for, so a failed fetch can name them."""
    from pyiqa.utils import download_util

    original = download_util.download_url_to_file

    def record(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
        seen.append((url, dst))
        original(url, dst, *args, **kwargs)

    download_util.download_url_to_file = record
    try:
        yield
    finally:
        download_util.download_url_to_file = original


class PyIQAMetric:
    """One pyiqa metric, streamed per batch: (B,) scores of SR (and HR for full-reference metrics)."""

    def __init__(self, ctx: MetricContext, name: str, full_reference: bool) -> None:
        pyiqa = _import_pyiqa()
        from pyiqa.utils import download_util

        self.ctx, self.name, self.full_reference = ctx, name, full_reference
        seen: list[tuple[str, str]] = []
        try:
            with _recording_downloads(seen):
                self.model = pyiqa.create_metric(name, device=ctx.device, as_loss=False)
        except Exception as exc:  # pyiqa raises whatever its downloader does (URLError, OSError, HTTP errors)
            where = "; ".join(f"put {dst} (from {url})" for url, dst in seen) or (
                f"put its weights in pyiqa's cache folder {download_util.DEFAULT_CACHE_DIR}"
            )
            raise MissingWeightsError(
                f"pyiqa {pyiqa_version()} could not build {name!r} ({type(exc).__name__}: {exc}); {where}, "
                "or run once where the network allows"
            ) from exc
        self.model.eval()

    def update(
        self, sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, ids: Sequence[str]
    ) -> dict[str, torch.Tensor]:
        """Per-image scores (B,) of SR (against HR for full-reference metrics), border cropped."""
        c = self.ctx.crop_border
        if c:
            sr, hr = sr[..., c:-c, c:-c], hr[..., c:-c, c:-c]
        with torch.no_grad():
            args = (sr.float(), hr.float()) if self.full_reference else (sr.float(),)
            score = self.model(*args)
        return {column_of(self.name): torch.as_tensor(score).reshape(-1).float().cpu()}

    def compute(self) -> dict[str, MetricValue]:
        """Per-image metric: the runner averages the per-image values."""
        return {}


def _missing(name: str, reason: str) -> MetricInfo:
    """The declaration of a pyiqa metric that cannot be built here: its column, and the reason as the error."""

    def factory(ctx: MetricContext) -> Any:
        raise MissingWeightsError(reason)

    return MetricInfo(
        name=f"{PREFIX}:{name}",
        factory=factory,
        columns=(Column(column_of(name), f"pyiqa {name}", name, f"pyiqa's {name} (not computed here)", None),),
        help=f"pyiqa's {name}",
        source="pyiqa (chaofengc/IQA-PyTorch)",
        needs=INSTALL,
    )


def resolve(name: str) -> MetricInfo:
    """Any pyiqa metric by its pyiqa name, e.g. musiq, clipiqa, maniqa, dists, gmsd (pyiqa's own table)."""
    version = pyiqa_version()
    if version is None:
        return _missing(name, f"pyiqa:{name} not computed: pyiqa is not installed; {INSTALL}")
    try:
        from pyiqa.default_model_configs import DEFAULT_CONFIGS
    except ImportError as exc:
        return _missing(name, f"pyiqa:{name} not computed: pyiqa {version} cannot be imported ({exc}); {INSTALL}")
    if name not in DEFAULT_CONFIGS:
        close = difflib.get_close_matches(name, list(DEFAULT_CONFIGS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown pyiqa metric {name!r} (pyiqa {version} knows {len(DEFAULT_CONFIGS)}){hint}")
    cfg = DEFAULT_CONFIGS[name]
    full_reference = cfg.get("metric_mode", "FR") == "FR"
    lower = bool(cfg.get("lower_better", False))
    kind = "full-reference" if full_reference else "no-reference"
    direction = "lower" if lower else "higher"
    return MetricInfo(
        name=f"{PREFIX}:{name}",
        factory=lambda ctx: PyIQAMetric(ctx, name, full_reference),
        columns=(
            Column(
                column_of(name),
                f"{name} (pyiqa)",
                f"{name} (pyiqa)",  # never just "psnr" next to our PSNR in headlines and image captions
                f"pyiqa {version} {name} with pyiqa's defaults (its own colour space; the run's crop border), "
                f"{kind}, {direction} is better",
                not lower,
            ),
        ),
        help=f"pyiqa {version} {name} ({kind}, {direction} is better)",
        source=f"pyiqa {version} create_metric({name!r})",
        needs=f"pyiqa ({INSTALL}); weights as pyiqa fetches them into its cache folder",
        full_reference=full_reference,
        version=version,
    )


register_prefix(PREFIX, resolve)
