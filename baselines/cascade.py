"""Cascaded generation, described as data: a base generator, then SR stages, each level's images kept and scored.

`CascadeSpec(base="ddpm:CKPT" | "folder:DIR", stages=("sr3:A.safetensors", "sr3:B.safetensors"), ...)` runs as:
1. the base makes `n` images (`ddpm:CKPT`: sample k seeded by its id; `folder:DIR`: the first n images, sorted);
2. stage j super-resolves level j-1's images with any method of the harness (per-image seeds: id `k@s<j>`);
3. every level's images are kept in RUN/levels/<level>/<id>.png; a level's folder carries the key of its
   settings and of every level before it, so a rerun reuses what is still valid and makes only what is missing
   (a kill loses at most one batch); a changed setting remakes that level and the ones after it;
4. each level is scored with FID/KID/IS against `fid_ref` (a folder, brought to each level's resolution by THE
   degradation, or an .npz of statistics), and each SR stage by the consistency of its output with its own
   input (SR3's: MSE between degrade(stage output) and the stage's input, x1e5);
5. RUN/summary.csv (one row per level), RUN/per_image.csv (consistency per stage and image), RUN/cascade.json
   (the spec and what each level was) and RUN/report.html (the `cascade-report` hook plugin).
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from baselines.checkpoint import read_metadata
from evalsuite import plugins
from evalsuite.datasets import load_rgb, scan_folder
from evalsuite.degrade import degrade, to_tensor
from evalsuite.io import atomic_write_text, remove_partials, save_png
from evalsuite.methods import ALL_METHODS, MethodContext, build_method, method_options, split_name
from evalsuite.spec import stable_hash

DEFAULT_METRICS = ("fid", "kid", "is")


@dataclass(frozen=True)
class CascadeSpec:
    """A cascade run: the base, the SR stages in order, how many samples, the sampler settings and the scoring."""

    base: str  # ddpm:CKPT | folder:DIR
    stages: tuple[str, ...]  # harness methods, e.g. sr3:A.safetensors; NAME@S gives the scale of a method w/o ckpt
    out: str
    n: int = 16
    steps: int | None = None  # sampler steps of the base and of every diffusion stage (as --steps in benchmarks)
    sampler: str | None = None
    noise_aug: float | None = None  # noise-augmentation level for stages trained with it (CDM; default 0)
    labels: str | None = None  # class-conditional base: a class name for every sample, or a CSV sample_id,label
    fid_ref: str | None = None  # folder of reference images or .npz statistics
    metrics: tuple[str, ...] = DEFAULT_METRICS
    seed: int = 0
    batch_size: int = 8
    device: str = "auto"
    report: bool = True

    def __post_init__(self) -> None:
        """Validate the names up front (before any sampling)."""
        if self.n < 1:
            raise ValueError(f"--n must be at least 1, got {self.n}")
        kind, _, arg = self.base.partition(":")
        if kind not in ("ddpm", "folder") or not arg:
            raise ValueError(f"--base {self.base!r}: give ddpm:CKPT (from `evalsuite train ddpm`) or folder:DIR")
        unknown = sorted(set(self.metrics) - {"fid", "kid", "is"})
        if unknown:
            raise ValueError(f"cascade metrics are fid, kid and is (consistency is always computed); got {unknown}")


@dataclass
class Level:
    """One resolution of the cascade: its name, what made it, its scale over the previous level, its folder."""

    name: str  # base | stage1 | stage2 ...
    source: str
    scale: int
    folder: Path
    key: str
    size: tuple[int, int] | None = None  # (H, W) of its images
    info: dict[str, Any] = field(default_factory=dict)


def sample_ids(n: int) -> list[str]:
    """Sample ids 000000, 000001, ...: the seeds of every level derive from them."""
    return [f"{k:06d}" for k in range(n)]


def _file_stamp(arg: str | None) -> list[int] | None:
    """Size and mtime of a checkpoint or folder argument, so a retrained file invalidates its level."""
    if arg and Path(arg).exists():
        st = Path(arg).stat()
        return [st.st_size, st.st_mtime_ns]
    return None


def stage_scale(name: str) -> tuple[str, int]:
    """(method name, scale) of a stage: NAME@S, or the `scale` stored in an evalsuite checkpoint."""
    if "@" in name:
        method, _, s = name.rpartition("@")
        return method, int(s)
    _, arg = split_name(name)
    if arg and Path(arg).suffix == ".safetensors":
        # The header only: the scale stored in the checkpoint's JSON config.
        scale = json.loads(read_metadata(arg).get("config") or "{}").get("scale")
        if scale:
            return name, int(scale)
    raise ValueError(f"stage {name!r}: its scale is unknown; write it as {name}@S (e.g. bicubic@4)")


def _labels(spec: CascadeSpec, ids: Sequence[str], classes: Sequence[str]) -> list[int] | None:
    """Class index per sample: a CSV sample_id,label, one class name for all, or the classes in turn."""
    if not classes:
        if spec.labels:
            raise ValueError(f"--labels {spec.labels}: the base {spec.base} is unconditional")
        return None
    index = {c: i for i, c in enumerate(classes)}
    if spec.labels is None:
        return [k % len(classes) for k in range(len(ids))]
    if Path(spec.labels).is_file():
        with Path(spec.labels).open(newline="") as f:
            table = {r[0].strip(): r[1].strip() for r in csv.reader(f) if len(r) >= 2}
        names = [table.get(i) for i in ids]
    else:
        names = [spec.labels] * len(ids)
    bad = sorted({str(x) for x in names if x not in index})
    if bad:
        raise ValueError(f"--labels {spec.labels}: unknown or missing classes {bad[:5]}; known: {list(classes)[:20]}")
    return [index[x] for x in names]  # type: ignore[index]


def save_image(x: torch.Tensor, path: Path) -> None:
    """Save one (3,H,W) image in [0,1] as an 8-bit PNG, atomically."""
    arr = (x.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    save_png(Image.fromarray(arr), path)


def load_image(path: Path) -> torch.Tensor:
    """(3,H,W) float in [0,1] of a PNG the cascade wrote (or a folder base's file)."""
    return to_tensor(load_rgb(path))


def prepare_level_folder(level: Level, say: Callable[[str], None]) -> None:
    """The level's folder for its key: kept when the key matches, else emptied (its settings changed)."""
    key_file = level.folder / ".key"
    if key_file.exists() and key_file.read_text() != level.key:
        say(f"note: {level.name}: settings or an earlier level changed; its images are remade")
        shutil.rmtree(level.folder)
    level.folder.mkdir(parents=True, exist_ok=True)
    remove_partials(level.folder)
    key_file.write_text(level.key)


def _batches(ids: Sequence[str], size: int) -> list[list[str]]:
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def base_level(spec: CascadeSpec, run: Path, device: torch.device, say: Callable[[str], None]):
    """The base level and a function that makes the missing base images of a batch of ids."""
    kind, _, arg = spec.base.partition(":")
    if kind == "folder":
        refs = scan_folder(Path(arg))
        if not refs:
            raise FileNotFoundError(f"--base folder:{arg} holds no image files")
        files = {f"{k:06d}": r.path for k, r in enumerate(refs[: spec.n])}
        if len(files) < spec.n:
            say(f"note: folder:{arg} holds {len(files)} images; the cascade uses them all (--n {spec.n})")
        key = stable_hash({"base": spec.base, "files": [str(p) for p in files.values()], "v": 1})
        level = Level("base", spec.base, 1, run / "levels" / "base", key, info={"images": len(files)})

        def make(ids: list[str]) -> dict[str, torch.Tensor]:
            return {i: load_image(files[i]) for i in ids}

        return level, make, list(files)

    from baselines.ddpm import load_ddpm

    base = load_ddpm(arg, device, steps=spec.steps, sampler=spec.sampler, seed=spec.seed)
    ids = sample_ids(spec.n)
    labels = _labels(spec, ids, base.model.cfg.classes)
    by_id = dict(zip(ids, labels, strict=True)) if labels is not None else None
    key = stable_hash({"base": spec.base, "fp": _file_stamp(arg), "info": base.info, "seed": spec.seed,
                       "labels": labels, "v": 1})
    level = Level("base", spec.base, 1, run / "levels" / "base", key, info=dict(base.info))

    def make(ids: list[str]) -> dict[str, torch.Tensor]:
        out = base.sample(ids, [by_id[i] for i in ids] if by_id is not None else None)
        return dict(zip(ids, out.cpu(), strict=True))

    return level, make, ids


def make_missing(level: Level, ids: Sequence[str], batch: int, make, say: Callable[[str], None]) -> int:
    """Make and save the images of `level` that are not on disk yet, batch by batch; returns how many."""
    missing = [i for i in ids if not (level.folder / f"{i}.png").exists()]
    for b in _batches(missing, batch):
        for i, x in make(b).items():
            save_image(x, level.folder / f"{i}.png")
    if missing:
        say(f"{level.name}: made {len(missing)} image(s), reused {len(ids) - len(missing)}")
    else:
        say(f"{level.name}: all {len(ids)} image(s) reused")
    return len(missing)


def _reference_for(spec: CascadeSpec, run: Path, size: tuple[int, int]) -> tuple[str | None, str]:
    """--fid-ref brought to a level's resolution: an .npz as given; a folder's images degraded to `size`."""
    if not spec.fid_ref:
        return None, "no --fid-ref: FID and KID need a reference set"
    ref = Path(spec.fid_ref).expanduser()
    if not ref.exists():
        raise FileNotFoundError(f"--fid-ref {ref} does not exist; pass a folder of images or an .npz of statistics")
    if ref.is_file():
        return str(ref), f"statistics {ref.name} (as given, whatever their resolution)"
    h, w = size
    folder = run / "reference" / f"{h}x{w}"
    refs = scan_folder(ref)
    key = stable_hash({"ref": [str(r.path) for r in refs], "fp": [_file_stamp(str(r.path)) for r in refs], "v": 1})
    if not (folder / ".key").exists() or (folder / ".key").read_text() != key:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for r in refs:
            # Central square crop to a multiple of the size, then THE degradation down to the level's size.
            x = to_tensor(load_rgb(r.path))
            side = min(x.shape[-2:])
            side -= side % h
            if side < h:
                continue
            top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
            crop = x[:, top : top + side, left : left + side]
            save_image(degrade(crop[None], side // h)[0] if side > h else crop, folder / f"{r.image_id}.png")
        (folder / ".key").write_text(key)
    return str(folder), f"{len(refs)} images of {ref} at {h}x{w}"


def _score_level(
    spec: CascadeSpec, run: Path, level: Level, ids: Sequence[str], device: torch.device, say: Callable[[str], None]
) -> dict[str, Any]:
    """FID/KID/IS of a level's images (each metric that cannot run is left empty with the reason)."""
    from evalsuite.metrics.base import MetricContext, build_metric

    ref, ref_note = _reference_for(spec, run, level.size or (0, 0))
    row: dict[str, Any] = {}
    notes = [f"reference: {ref_note}"]
    for name in spec.metrics:
        if name in ("fid", "kid") and ref is None:
            row[name] = math.nan
            continue
        try:
            ctx = MetricContext(
                device=device, scale=1, run_dir=run, options={"fid_ref": ref, "seed": spec.seed}, log=say
            )
            metric = build_metric(name, ctx)
            for b in _batches(ids, spec.batch_size):
                x = torch.stack([load_image(level.folder / f"{i}.png") for i in b]).to(device)
                metric.update(x, x, x, b)
            value = metric.compute()[name]
            row[name] = math.nan if value.value is None else float(value.value)
            if value.note:
                notes.append(f"{name}: {value.note}")
        except Exception as exc:  # a metric without weights is noted, never faked, and never sinks the run
            row[name] = math.nan
            notes.append(f"{name}: not computed: {type(exc).__name__}: {exc}")
            say(f"warning: {level.name}: {name} not computed: {exc}")
    row["notes"] = "; ".join(notes)
    return row


def _consistency(level: Level, prev: Level, ids: Sequence[str], batch: int) -> list[float]:
    """SR3's consistency of each output with its own input: MSE(degrade(out), input) x1e5, on [0,1]."""
    from evalsuite.metrics.base import MetricContext, build_metric

    metric = build_metric("consistency", MetricContext(device=torch.device("cpu"), scale=level.scale))
    values: list[float] = []
    for b in _batches(ids, batch):
        out = torch.stack([load_image(level.folder / f"{i}.png") for i in b])
        inp = torch.stack([load_image(prev.folder / f"{i}.png") for i in b])
        values.extend(metric.update(out, out, inp, b)["consistency"].tolist())
    return values


def run_cascade(spec: CascadeSpec, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run a cascade spec (resumable) and return its summary table (also written to RUN/summary.csv)."""
    from evalsuite.distributed import pick_device

    t0 = time.time()
    run = Path(spec.out)
    run.mkdir(parents=True, exist_ok=True)
    device = pick_device(spec.device)
    # 1. The base: its level (folder, key) and how to make a batch of its images.
    base, make_base, ids = base_level(spec, run, device, log)
    levels = [base]
    prepare_level_folder(base, log)
    make_missing(base, ids, spec.batch_size, make_base, log)
    # 2. The stages, in order: each one's key includes the previous level's, so a change flows downstream.
    for j, stage in enumerate(spec.stages, start=1):
        name, scale = stage_scale(stage)
        pairs = (("steps", spec.steps), ("sampler", spec.sampler), ("noise_aug", spec.noise_aug))
        options = {k: v for k, v in pairs if v is not None}
        method = _build_stage(name, scale, options, spec.seed, device)
        prev = levels[-1]
        key = stable_hash({"stage": name, "fp": _file_stamp(split_name(name)[1]), "opts": options, "seed": spec.seed,
                           "prev": prev.key, "v": 1})
        info = dict(getattr(method, "info", {}))
        level = Level(f"stage{j}", name, scale, run / "levels" / f"stage{j}", key, info=info)
        prepare_level_folder(level, log)

        def make(b: list[str], method=method, prev=prev, j=j) -> dict[str, torch.Tensor]:
            x = torch.stack([load_image(prev.folder / f"{i}.png") for i in b]).to(device)
            # Per-image seeds of this stage: the sample id and the stage index.
            out = method(x, [f"{i}@s{j}" for i in b])
            return dict(zip(b, out.cpu(), strict=True))

        make_missing(level, ids, spec.batch_size, make, log)
        levels.append(level)
    for lv in levels:
        with Image.open(lv.folder / f"{ids[0]}.png") as im:
            lv.size = (im.height, im.width)
    # 3. Scores: consistency of each stage with its input, distribution metrics of every level.
    per_image = {"image_id": ids}
    rows = []
    for k, lv in enumerate(levels):
        row: dict[str, Any] = {"level": lv.name, "source": lv.source, "resolution": f"{lv.size[0]}x{lv.size[1]}"}
        row["n_images"] = len(ids)
        cons = math.nan
        if k > 0:
            values = _consistency(lv, levels[k - 1], ids, spec.batch_size)
            per_image[f"consistency_{lv.name}"] = values
            cons = float(np.mean(values))
        row["consistency"] = cons
        row.update(_score_level(spec, run, lv, ids, device, log))
        rows.append(row)
    summary = pd.DataFrame(rows, columns=["level", "source", "resolution", "n_images", "consistency",
                                          *spec.metrics, "notes"])
    # 4. Files: the tables, what each level was, then the report.
    atomic_write_text(run / "summary.csv", summary.to_csv(index=False))
    atomic_write_text(run / "per_image.csv", pd.DataFrame(per_image).to_csv(index=False))
    meta = {
        "spec": asdict(spec),
        "levels": [{"name": lv.name, "source": lv.source, "scale": lv.scale, "size": lv.size,
                    "folder": str(lv.folder.relative_to(run)), "key": lv.key, "info": lv.info} for lv in levels],
        "seconds": round(time.time() - t0, 2),
    }
    atomic_write_text(run / "cascade.json", json.dumps(meta, indent=2, default=str))
    if spec.report:
        # The report is a plugin of the reports package (entry point group evalsuite.hooks).
        plugins.get("evalsuite.hooks", "cascade-report", "report hook")(run)
    return summary


def _build_stage(name: str, scale: int, options: dict[str, Any], seed: int, device: torch.device):
    """A harness method for one stage, its options built as `run benchmark` builds them (`*`: where it has them)."""
    opts = method_options(name, {ALL_METHODS: options})
    return build_method(name, MethodContext(scale=scale, device=device, seed=seed, options=opts))


def generated_lr(spec: Any, task: Any, device: torch.device, say: Callable[[str], None]) -> Path:
    """`run benchmark --lr-source cascade:BASE`: make (or reuse) the base's samples in RUN/generated/lr."""
    base = str(spec.lr_source).partition(":")[2]
    steps = spec.method_options.get("*", {}).get("steps")
    cspec = CascadeSpec(base=base, stages=(), out=str(spec.out_dir / "generated"), n=spec.limit or 16, steps=steps,
                        seed=spec.seed, batch_size=spec.batch_size, metrics=(), report=False)
    level, make, ids = base_level(cspec, spec.out_dir / "generated", device, say)
    level.folder = spec.out_dir / "generated" / "lr"
    prepare_level_folder(level, say)
    make_missing(level, ids, spec.batch_size, make, say)
    return level.folder
