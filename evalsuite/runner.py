"""spec -> prepared HR/LR (cached) -> method outputs (cached) -> streamed metrics -> Results.

Under torchrun the images are sharded over ranks; per-image values are gathered and dataset-level
metrics synchronize their own statistics, so N processes give the one-process numbers.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from evalsuite import distributed as D
from evalsuite.datasets import resolve_data
from evalsuite.degrade import quantize, to_image, to_tensor
from evalsuite.io import atomic_write_text, remove_partials, save_png
from evalsuite.methods import Method, MethodContext, build_method, method_available, method_label, split_name
from evalsuite.metrics.base import (
    MetricContext,
    MetricValue,
    build_metric,
    column_metric,
    metric_info,
    resolve_metrics,
)
from evalsuite.prepare import NoUsableImagesError, PreparedImages
from evalsuite.results import Results, bootstrap_ci, summary_columns
from evalsuite.spec import DEFAULT_METHOD_CANDIDATES, DEFAULT_TASK, BenchmarkSpec, stable_hash
from evalsuite.tasks import Task, resolve_task
from evalsuite.weights import MissingWeightsError


def resolve_spec_task(spec: BenchmarkSpec) -> Task:
    """The spec's task: named, custom scale, or the default demo task."""
    if spec.task is None and spec.scale is None:
        return resolve_task(DEFAULT_TASK)
    return resolve_task(spec.task, spec.scale)


def default_methods(task: Task, log=print) -> list[str]:
    """Every default method that fits the task's scale and can run here."""
    out = []
    for name in DEFAULT_METHOD_CANDIDATES:
        if name.startswith("esrgan-thick-x"):
            name = f"esrgan-thick-x{task.scale}"
            if task.scale not in (2, 3, 4, 8):
                continue
        if name == "realesrgan-x4plus" and task.scale != 4:
            continue
        ok, why = method_available(name)
        if ok:
            out.append(name)
        else:
            log(f"note: {name} left out of the default methods: {why}")
    return out


def _png_tensor(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return to_tensor(im.convert("RGB"))


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("evalsuite", "torch", "torchvision", "torchmetrics", "numpy", "pillow", "lpips", "clean-fid", "pyiqa"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def _batches(ids: Sequence[str], sizes: dict[str, tuple[int, int]], batch_size: int) -> list[list[str]]:
    """Consecutive ids grouped into batches of equal image size."""
    out: list[list[str]] = []
    for i in ids:
        if out and len(out[-1]) < batch_size and sizes[out[-1][0]] == sizes[i]:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _metric_cache_files(folder: Path, label: str) -> list[Path]:
    """The per-rank metric cache files of one method (`<label>.r<rank>.jsonl`; labels may contain dots)."""
    pattern = re.compile(re.escape(label) + r"\.r\d+\.jsonl")
    return sorted(p for p in folder.glob("*.jsonl") if pattern.fullmatch(p.name))


class _MetricCache:
    """Per-image metric values of one method, appended per batch (a kill loses at most one batch)."""

    def __init__(self, folder: Path, label: str, key: str) -> None:
        self.key = key
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{label}.r{D.rank()}.jsonl"
        self.values: dict[str, dict[str, float]] = {}
        for p in _metric_cache_files(folder, label):
            for line in p.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if row.get("key") == key:
                    self.values[row["id"]] = row["values"]

    def add(self, values: dict[str, dict[str, float]]) -> None:
        """Record one batch's values by image id (later lines win when the file is read back)."""
        self.values.update(values)
        with open(self.path, "a") as f:
            f.writelines(json.dumps({"key": self.key, "id": i, "values": v}) + "\n" for i, v in values.items())


def _loader(paths: list[list[Path | None]], workers: int) -> Iterator[list[torch.Tensor | None]]:
    """Decode PNG batches in worker threads, a few batches ahead."""

    def load(batch: list[Path | None]) -> list[torch.Tensor | None]:
        return [(_png_tensor(p) if p is not None else None) for p in batch]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(load, b) for b in paths[:3]]
        for i in range(len(paths)):
            if i + 3 < len(paths):
                futures.append(pool.submit(load, paths[i + 3]))
            yield futures[i].result()


def _call_method(
    method: Method, x_lr: torch.Tensor, ids: list[str], scale: int
) -> list[tuple[torch.Tensor | None, str]]:
    """Run a method on a batch; per image, the output (B-th slice) or the reason it failed.

    A batch that raises is retried one image at a time, so one bad image does not fail its neighbours.
    """
    expected = (3, x_lr.shape[-2] * scale, x_lr.shape[-1] * scale)
    try:
        with torch.no_grad():
            out = method(x_lr, ids).float()
    except Exception as exc:
        if len(ids) > 1:
            return [r for k in range(len(ids)) for r in _call_method(method, x_lr[k : k + 1], ids[k : k + 1], scale)]
        return [(None, f"method raised {type(exc).__name__}: {exc}")]
    if tuple(out.shape) != (len(ids), *expected):
        return [(None, f"method returned shape {tuple(out.shape)}, expected {(len(ids), *expected)}")] * len(ids)
    return [(o, "") if torch.isfinite(o).all() else (None, "output holds NaN or Inf") for o in out]


def _method_key(name: str, spec: BenchmarkSpec, task: Task, prep_key: str) -> str:
    _, arg = split_name(name)
    fp = None
    if arg and Path(arg).exists():
        st = Path(arg).stat()
        fp = [st.st_size, st.st_mtime_ns]
    return stable_hash(
        {
            "method": name,
            "fp": fp,
            "opts": spec.method_options,
            "seed": spec.seed,
            "task": task.name,
            "prep": prep_key,
        }
    )


@dataclass
class _RunContext:
    """What every method's evaluation shares within one run."""

    spec: BenchmarkSpec
    task: Task
    device: torch.device
    run_dir: Path
    prep: PreparedImages
    ids: list[str]  # every usable image, in id order
    my_ids: list[str]  # this rank's shard
    sizes: dict[str, tuple[int, int]]
    mctx: MetricContext
    metric_names: list[str]
    metric_notes: dict[str, str]  # metric -> why it is empty (shared, filled as metrics fail)
    per_image_metrics: dict[str, Any]
    metric_cfg: str
    all_cols: list[str]
    progress: bool
    say: Any


@dataclass
class _MethodResult:
    """One method's summary row, per-image rows, failed images and settings."""

    summary_row: dict[str, Any]
    per_image_rows: list[dict[str, Any]]
    failures: list[dict[str, str]]
    info: dict[str, Any]


def _reset_stale_outputs(rc: _RunContext, label: str, mkey: str) -> Path:
    """outputs/<label>/ for this method key: remade when the method's spec or checkpoint changed."""
    out_m = rc.run_dir / "outputs" / label
    key_file = out_m / ".key"
    if D.is_main():
        if key_file.exists() and key_file.read_text() != mkey:
            rc.say(f"note: {label}: spec or checkpoint changed since the last run; its outputs are remade")
            shutil.rmtree(out_m, ignore_errors=True)
            for p in _metric_cache_files(rc.run_dir / ".cache" / "metrics", label):
                p.unlink()
        out_m.mkdir(parents=True, exist_ok=True)
        remove_partials(out_m)
        key_file.write_text(mkey)
    D.barrier()
    return out_m


def _dataset_metrics(rc: _RunContext) -> dict[str, Any]:
    """Fresh dataset-level metrics (FID, KID, IS, classification) for one method."""
    out: dict[str, Any] = {}
    for n in rc.metric_names:
        if not metric_info(n).per_image and n not in rc.metric_notes:
            try:
                out[n] = build_metric(n, rc.mctx)
            except MissingWeightsError as exc:
                rc.metric_notes[n] = str(exc)
                rc.say(f"warning: {n} not computed: {exc}")
    return out


class _LazyMethod:
    """Builds a method on first use (a fully cached rerun never loads a model); remembers a build error."""

    def __init__(self, rc: _RunContext, name: str, info_path: Path) -> None:
        self.rc, self.name, self.info_path = rc, name, info_path
        self.method: Method | None = None
        self.error = ""
        self.info: dict[str, Any] = json.loads(info_path.read_text()) if info_path.exists() else {}

    def get(self) -> Method | None:
        if self.method is None and not self.error:
            rc = self.rc
            try:
                ctx = MethodContext(rc.task.scale, rc.device, rc.spec.seed, rc.spec.method_options)
                self.method = build_method(self.name, ctx)
                self.info = {"spec": self.name, **dict(getattr(self.method, "info", {}) or {})}
                if D.is_main():
                    atomic_write_text(self.info_path, json.dumps(self.info, default=str))
            except Exception as exc:  # a method that cannot be built fails alone, with its reason
                self.error = f"{type(exc).__name__}: {exc}"
                rc.say(f"error: method {self.name} could not be built: {self.error}")
        return self.method


def _evaluate_method(rc: _RunContext, name: str, label: str) -> _MethodResult:
    """Generate a method's missing outputs, score every image, and summarize (this rank's shard, gathered)."""
    mkey = _method_key(name, rc.spec, rc.task, rc.prep.key)
    out_m = _reset_stale_outputs(rc, label, mkey)
    cache = _MetricCache(rc.run_dir / ".cache" / "metrics", label, stable_hash([mkey, rc.metric_cfg]))
    ds_metrics = _dataset_metrics(rc)
    per_cols = [c for m in rc.per_image_metrics.values() for c in m.columns]
    lazy = _LazyMethod(rc, name, out_m / ".info.json")
    failures: list[dict[str, str]] = []
    t_method, n_generated = 0.0, 0

    # Batches that need work: missing outputs, uncached per-image values, or dataset-level metrics.
    work = []
    for b in _batches(rc.my_ids, rc.sizes, rc.spec.batch_size):
        missing = [i for i in b if not (out_m / f"{i}.png").exists()]
        if missing or ds_metrics or any(i not in cache.values for i in b):
            work.append((b, missing))
    bar = tqdm(total=len(rc.my_ids), desc=label, disable=not (rc.progress and D.is_main()), leave=False)
    bar.update(len(rc.my_ids) - sum(len(b) for b, _ in work))
    hr_dir, lr_dir = rc.prep.hr_dir, rc.prep.lr_dir
    loads = [
        [hr_dir / f"{i}.png" for i in b]
        + [lr_dir / f"{i}.png" for i in b]
        + [None if i in missing else out_m / f"{i}.png" for i in b]
        for b, missing in work
    ]
    for (b, missing), tensors in zip(work, _loader(loads, rc.spec.workers)):
        n = len(b)
        hr = torch.stack(tensors[:n]).to(rc.device)
        lr = torch.stack(tensors[n : 2 * n]).to(rc.device)
        sr_list: list[torch.Tensor | None] = [t.to(rc.device) if t is not None else None for t in tensors[2 * n :]]
        pos = {i: k for k, i in enumerate(b)}
        # Run the method on the images whose outputs are missing; save each valid output atomically.
        if missing:
            method = lazy.get()
            if method is None:
                failures += [
                    {"method": label, "image_id": i, "reason": f"method not built: {lazy.error}"} for i in missing
                ]
            else:
                t0 = time.perf_counter()
                outs = _call_method(method, lr[[pos[i] for i in missing]], list(missing), rc.task.scale)
                t_method += time.perf_counter() - t0
                for i, (out_k, err) in zip(missing, outs):
                    if out_k is None:
                        failures.append({"method": label, "image_id": i, "reason": err})
                        continue
                    sr_k = quantize(out_k)  # scored as saved: 8-bit
                    save_png(to_image(sr_k), out_m / f"{i}.png")
                    sr_list[pos[i]] = sr_k
                    n_generated += 1
        # Stream the batch's valid outputs through every metric.
        ok = [k for k, t in enumerate(sr_list) if t is not None]
        if ok:
            sr = torch.stack([sr_list[k] for k in ok])
            hr_ok, lr_ok, ids_ok = hr[ok], lr[ok], [b[k] for k in ok]
            vals: dict[str, torch.Tensor] = {}
            for m in rc.per_image_metrics.values():
                vals.update(m.update(sr, hr_ok, lr_ok, ids_ok) or {})
            for m in ds_metrics.values():
                m.update(sr, hr_ok, lr_ok, ids_ok)
            cache.add({i: {c: float(vals[c][k]) for c in per_cols} for k, i in enumerate(ids_ok)})
        bar.update(n)
    bar.close()

    # Metrics that drive the method on their own inputs (classification protocol).
    drivers = [m for n, m in ds_metrics.items() if metric_info(n).drives_method]
    if drivers and lazy.get() is not None:
        for m in drivers:
            m.evaluate(lazy.method, rc.my_ids, rc.prep.hr_dir)
    ds_values: dict[str, MetricValue] = {}
    for n, m in ds_metrics.items():
        try:
            ds_values.update(m.compute())  # all-reduces its statistics across ranks
        except MissingWeightsError as exc:
            rc.metric_notes[n] = str(exc)

    # Gather this method's failures and per-image values from every rank.
    failures = [f for part in D.gather_objects(failures) for f in part]
    mine = {i: cache.values[i] for i in rc.my_ids if i in cache.values}
    rows = {i: v for part in D.gather_objects(mine) for i, v in part.items()}
    failed_ids = {f["image_id"] for f in failures}
    scored = [i for i in rc.ids if i in rows and i not in failed_ids]
    per_image_rows = [{"method": label, "image_id": i, **{c: rows[i].get(c) for c in rc.all_cols}} for i in scored]

    # Summary row: per-image means with bootstrap CIs; dataset-level values as the metric gives them.
    notes: list[str] = []
    srow: dict[str, Any] = {"method": label, "n_images": len(scored)}
    for c in rc.all_cols:
        if c in per_cols:
            v = np.array([rows[i][c] for i in scored], dtype=np.float64)
            srow[c] = float(np.nanmean(v)) if v.size else math.nan
            srow[f"{c}_ci_low"], srow[f"{c}_ci_high"] = bootstrap_ci(v, rc.spec.bootstrap, rc.spec.seed)
        else:
            mv = ds_values.get(c, MetricValue(None))
            for suffix, x in (("", mv.value), ("_ci_low", mv.ci_low), ("_ci_high", mv.ci_high)):
                srow[c + suffix] = math.nan if x is None else x
            if mv.note:
                notes.append(f"{c}: {mv.note}")
    if failed_ids:
        notes.append(f"{len(failed_ids)} image(s) failed (see failures.csv)")
        rc.say(f"warning: {label}: {len(failed_ids)} image(s) failed; see failures.csv")
    if lazy.error:
        notes.append(f"method not built: {lazy.error}")
    srow["notes"] = "; ".join(notes)
    info = dict(lazy.info) or {"spec": name}
    if n_generated:
        # Kept with the outputs, so a rerun that generates nothing still reports the method's speed.
        info["seconds_per_image"] = t_method / n_generated
        if D.is_main():
            atomic_write_text(out_m / ".info.json", json.dumps(info, default=str))
    return _MethodResult(srow, per_image_rows, failures, info)


def run(spec: BenchmarkSpec, log=print, progress: bool = True) -> Results:
    """Run a benchmark spec end to end and return its Results (also written to the run folder)."""
    t_start = time.time()
    device = D.pick_device(spec.device)
    D.init_from_env(device)
    device = D.local_rank_device(device)
    main = D.is_main()
    say = log if main else (lambda *a, **k: None)
    task = resolve_spec_task(spec)
    run_dir = spec.out_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir = resolve_data(spec.data)
    metric_names = resolve_metrics(spec.metrics)
    methods = list(spec.methods) or default_methods(task, say)
    if not methods:
        raise ValueError("no methods to run; pass --methods (for example bicubic)")
    for m in methods:
        split_name(m)  # fail early on unknown names, before any work

    # 1. Prepare HR/LR images once (rank 0), reuse them on reruns.
    prep = PreparedImages(run_dir, task, data_dir)
    prepared = None
    if main:
        ids, errors, index = prep.prepare(spec.limit, spec.workers, say)
        atomic_write_text(run_dir / "errors.csv", pd.DataFrame(errors, columns=["path", "reason"]).to_csv(index=False))
        atomic_write_text(run_dir / "spec.yaml", spec.to_yaml())
        for e in errors:
            say(f"skipped {e['path']}: {e['reason']}")
        prepared = (ids, errors, index)
    # Every rank works on rank 0's list of images (the other ranks decode nothing).
    ids, errors, index = D.broadcast_object(prepared)
    errors_df = pd.DataFrame(errors, columns=["path", "reason"])
    if not ids:
        raise NoUsableImagesError(
            f"no usable image under {data_dir}: every file was skipped; see {run_dir / 'errors.csv'}"
        )
    sizes = {i: tuple(index["images"][i]["size"]) for i in ids}
    my_ids = ids[D.rank() :: D.world_size()]
    say(f"task {task.name} (x{task.scale}), {len(ids)} images, {len(errors_df)} skipped, device {device}")

    # 2. Metrics: per-image ones are built once; a metric without weights is noted, not faked.
    mctx = MetricContext(
        device=device,
        scale=task.scale,
        y_channel=spec.y_channel,
        crop_border=spec.crop_border,
        run_dir=run_dir,
        options={**spec.metric_options, "seed": spec.seed},
    )
    metric_notes: dict[str, str] = {}
    shared: dict[str, Any] = {}
    for name in metric_names:
        if metric_info(name).per_image:
            try:
                shared[name] = build_metric(name, mctx)
            except MissingWeightsError as exc:
                metric_notes[name] = str(exc)
                say(f"warning: {name} not computed: {exc}")
    all_cols = [c for n in metric_names for c in metric_info(n).column_names]
    metric_cfg = stable_hash(
        {
            "metrics": metric_names,
            "y": spec.y_channel,
            "crop": spec.crop_border,
            "opts": spec.metric_options,
            "v": 1,
        }
    )

    rc = _RunContext(
        spec,
        task,
        device,
        run_dir,
        prep,
        ids,
        my_ids,
        sizes,
        mctx,
        metric_names,
        metric_notes,
        shared,
        metric_cfg,
        all_cols,
        progress,
        say,
    )
    labels: list[str] = []
    per_image_rows: list[dict[str, Any]] = []
    summary_rows: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    method_info: dict[str, Any] = {}
    for name in methods:
        label = method_label(name)
        while label in labels:
            label += "_"
        labels.append(label)
        result = _evaluate_method(rc, name, label)
        summary_rows.append(result.summary_row)
        per_image_rows += result.per_image_rows
        failures += result.failures
        if result.info:
            method_info[label] = result.info

    # Reference row: metrics with a `reference(ids, hr_dir)` (IS, classification) score the HR images.
    ref_row: dict[str, Any] = {}
    for n in metric_names:
        if not metric_info(n).hr_row or n in metric_notes:
            continue  # FID/KID have no reference row: not built for nothing
        for c, mv in build_metric(n, mctx).reference(ids, prep.hr_dir).items():
            ref_row[c], ref_row[f"{c}_ci_low"], ref_row[f"{c}_ci_high"] = (
                math.nan if x is None else x for x in (mv.value, mv.ci_low, mv.ci_high)
            )
            if mv.note:
                ref_row["notes"] = "; ".join(x for x in (ref_row.get("notes"), f"{c}: {mv.note}") if x)
    if ref_row:
        summary_rows.append({"method": "reference (HR)", "n_images": len(ids), "notes": "", **ref_row})

    # 3. Summary and files (rank 0).
    summary = pd.DataFrame(summary_rows)
    for c in all_cols:
        if column_metric(c) in metric_notes:
            summary[c] = math.nan
            summary[f"{c}_ci_low"] = math.nan
            summary[f"{c}_ci_high"] = math.nan
    general = "; ".join(f"{n}: {msg}" for n, msg in metric_notes.items())
    if general:
        summary["notes"] = [("; ".join(x for x in (n, general) if x)) for n in summary["notes"]]
    summary = summary.reindex(columns=summary_columns(all_cols))
    per_image = pd.DataFrame(per_image_rows, columns=["method", "image_id", *all_cols])
    results = Results(
        run_dir,
        summary,
        per_image,
        errors_df,
        pd.DataFrame(failures, columns=["method", "image_id", "reason"]),
        run_notes=[f"{n}: {msg}" for n, msg in metric_notes.items()],
    )
    if main:
        results.write()
        manifest = {
            "spec_hash": stable_hash(spec.to_dict()),
            "task": asdict(task),
            "data": str(data_dir),
            "n_images": len(ids),
            "n_skipped": len(errors_df),
            "inputs": {i: index["images"][i]["sha256"] for i in ids},
            "methods": method_info,
            "metrics": {n: metric_info(n).help for n in metric_names},
            "metric_notes": metric_notes,
            "conventions": {
                "pixel_range": "[0,1]; SR outputs rounded to 8 bits (as saved) before scoring",
                "consistency": "MSE(degrade(SR), LR) on [0,1], x1e5 (SR3 Table 1)",
                "psnr_ssim": ("Y channel (BT.601, BasicSR)" if spec.y_channel else "RGB")
                + f", crop_border={spec.crop_border}",
                "ci": f"95% percentile bootstrap of the mean over images, {spec.bootstrap} resamples, seed {spec.seed}",
            },
            "versions": _versions(),
            "device": _device_name(device),
            "world_size": D.world_size(),
            "command": " ".join(sys.argv),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t_start)),
            "seconds": round(time.time() - t_start, 3),
        }
        atomic_write_text(run_dir / "manifest.json", json.dumps(manifest, indent=1, default=str))
        if spec.report:
            try:
                from reports.html import write_report

                write_report(run_dir)
            except Exception as exc:  # the report must never lose the numbers already written
                say(f"warning: report not written: {type(exc).__name__}: {exc}")
    D.barrier()
    return results
