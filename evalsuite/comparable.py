"""Whether two runs' numbers may be compared: same task, protocol, degradation, metric settings and weights.

A run folder says what its numbers were made from (`spec.yaml`, `manifest.json`). `RunInfo` reads that
once; `differences(a, b)` names, in words, every setting that makes the numbers of two runs incomparable
(the refusal of `evalsuite compare` and the grouping of `evalsuite runs leaderboard`). The methods
themselves (their checkpoints and weights) may differ: that is what a comparison is for. The image set is
matched by content (the sha256 of each HR source file, `manifest.json`'s `inputs`), never by file name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from evalsuite.spec import stable_hash


@dataclass(frozen=True)
class RunInfo:
    """What a finished run folder says about how its numbers were made."""

    run_dir: Path
    spec: dict[str, Any]
    manifest: dict[str, Any]

    @classmethod
    def load(cls, run_dir: str | Path) -> RunInfo:
        """Read RUN_DIR/spec.yaml and RUN_DIR/manifest.json (a clear error when the folder is not a finished run)."""
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"run folder {run_dir} does not exist")
        mpath, spath = run_dir / "manifest.json", run_dir / "spec.yaml"
        for p in (mpath, spath, run_dir / "summary.csv"):
            if not p.exists():
                raise FileNotFoundError(
                    f"{run_dir} is not a finished benchmark run folder: {p.name} is missing "
                    "(run `evalsuite run benchmark --out DIR` to completion first)"
                )
        try:
            manifest = json.loads(mpath.read_text())
            spec = yaml.safe_load(spath.read_text()) or {}
        except (OSError, ValueError, yaml.YAMLError) as exc:
            raise ValueError(f"cannot read {run_dir}'s manifest.json/spec.yaml: {exc}") from exc
        return cls(run_dir, spec, manifest)

    @property
    def task(self) -> dict[str, Any]:
        """The task as recorded: name, scale, lr_size, hr_size."""
        return dict(self.manifest.get("task") or {})

    @property
    def scale(self) -> int | None:
        """The task's scale factor."""
        return self.task.get("scale")

    @property
    def data(self) -> str:
        """The `--data` the run was given (a set name or a folder)."""
        return str(self.spec.get("data", self.manifest.get("data", "")))

    @property
    def protocol_name(self) -> str:
        """`basicsr` or `default`."""
        return self.spec.get("protocol") or "default"

    @property
    def image_hashes(self) -> dict[str, str]:
        """{image id: sha256 of its HR source file (with the LR file's, for paired data)}."""
        return dict(self.manifest.get("inputs") or {})

    @property
    def data_key(self) -> str:
        """A hash of the set of images scored (by content, not by name)."""
        return stable_hash(sorted(set(self.image_hashes.values())))

    def identity(self) -> dict[str, str]:
        """The settings that must be equal for numbers to be comparable, in words."""
        t = self.task
        task = str(t.get("name"))
        size = f", LR {t.get('lr_size')} px -> HR {t.get('hr_size')} px" if t.get("hr_size") else ""
        conv = self.manifest.get("conventions") or {}
        spec = self.spec
        lr_source = spec.get("lr_source")
        if lr_source:
            degradation = f"generated LR ({lr_source})"
        elif self.manifest.get("paired"):
            degradation = "given LR images (paired data)"
        else:
            degradation = str(spec.get("degradation") or conv.get("lr") or "degrade(HR), ours")
        return {
            "task": task if task == f"x{t.get('scale')}" and not size else f"{task} (x{t.get('scale')}{size})",
            "protocol": f"{self.protocol_name}: psnr/ssim on "
            f"{'the Y channel' if spec.get('y_channel') else 'RGB'}, crop border {spec.get('crop_border', 0)}",
            "degradation": degradation,
            "metric options": json.dumps(spec.get("metric_options") or {}, sort_keys=True),
            "samples": str(spec.get("samples", 1)),
        }

    def identity_key(self) -> str:
        """A hash of `identity()`: runs with equal keys share task, protocol, degradation and metric options."""
        return stable_hash(self.identity())

    @property
    def metric_weights(self) -> dict[str, str]:
        """{weights name: content digest} of the metric weights files the run used (empty for older runs)."""
        return dict(self.manifest.get("metric_weights") or {})

    @property
    def metric_versions(self) -> dict[str, str]:
        """{metric: version of the library it wraps} (pyiqa), as recorded."""
        return dict(self.manifest.get("metric_versions") or {})


def _conflicts(what: str, a: Mapping[str, str], b: Mapping[str, str], na: str, nb: str) -> list[str]:
    """Entries both mappings hold with different values (one that only one run used does not conflict)."""
    return [f"{what} {k}: {na} used {a[k]}, {nb} used {b[k]}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]


def differences(a: RunInfo, b: RunInfo, *, same_images: bool = False) -> list[str]:
    """Every reason the numbers of runs a and b are not comparable, in words ([] when they are).

    Metric weights and metric library versions conflict only where both runs used the same file or
    metric; with `same_images`, the two runs must also have scored the same set of images (by content).
    """
    na, nb = str(a.run_dir), str(b.run_dir)
    out = []
    ia, ib = a.identity(), b.identity()
    for key in ia:
        if ia[key] != ib[key]:
            out.append(f"{key}: {na} has {ia[key]}; {nb} has {ib[key]}")
    out += _conflicts("metric weights", a.metric_weights, b.metric_weights, na, nb)
    out += _conflicts("metric version", a.metric_versions, b.metric_versions, na, nb)
    if same_images and a.data_key != b.data_key:
        out.append(f"images: {na} scored {len(a.image_hashes)} images, {nb} {len(b.image_hashes)}, not the same set")
    return out


class NotComparableError(ValueError):
    """Two runs whose numbers must not be compared; the message names every setting that differs."""


def check_comparable(a: RunInfo, b: RunInfo) -> None:
    """Raise NotComparableError naming what differs, when runs a and b are not comparable."""
    diff = differences(a, b)
    if diff:
        raise NotComparableError(
            "the runs are not comparable (their numbers were made differently):\n  - " + "\n  - ".join(diff)
        )
