"""spec -> prepared HR/LR (cached) -> method outputs (cached) -> streamed metrics -> Results and run files.

`run()` reads as the five steps of a run; the pieces live in `prepare` (data), `score` (a method's outputs
and metrics), `cache` (what reruns reuse), `results` (summary rows) and `manifest`. Under torchrun the
images are sharded over ranks; per-image values are gathered and dataset-level metrics synchronize their
own statistics, so N processes give the one-process numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from evalsuite import distributed as D
from evalsuite import plugins
from evalsuite.cpu import ThreadGovernor
from evalsuite.datasets import resolve_inputs
from evalsuite.io import atomic_write_text
from evalsuite.lr_source import NO_HR_NOTE, check_metrics, generated_inputs
from evalsuite.manifest import write_manifest
from evalsuite.methods import method_available, method_label, split_name
from evalsuite.metrics.base import (
    MetricContext,
    build_metric,
    column_metric,
    metric_info,
    nonstandard_note,
    resolve_metrics,
)
from evalsuite.metrics.weights import reset_used_weights
from evalsuite.prepare import PAIRED_CONSISTENCY_NOTE, NoUsableImagesError, PreparedImages
from evalsuite.realesrgan_degrade import CONSISTENCY_NOTE as REALESRGAN_CONSISTENCY_NOTE
from evalsuite.results import (
    FAILURE_COLUMNS,
    NONSTANDARD_COLUMN,
    REFERENCE_ROW,
    SKIPPED_COLUMNS,
    Results,
    assemble_summary,
    nonstandard_flags,
)
from evalsuite.score import MethodResult, RunContext, RunMetrics, evaluate_method, reason, uses_samples
from evalsuite.spec import DEFAULT_METHOD_CANDIDATES, DEFAULT_TASK, BenchmarkSpec, stable_hash
from evalsuite.sweep import expand_methods, write_sweeps
from evalsuite.tasks import Task, resolve_task
from evalsuite.weights import MissingWeightsError

__all__ = ["NoUsableImagesError", "default_methods", "run"]

# Every finished run registers itself in the results index ($EVALSUITE_INDEX=off to stop it; evalsuite/index.py).
INDEX_HOOK = "evalsuite.index:register_hook"


def default_methods(task: Task, log=print) -> list[str]:
    """Every default method that fits the task's scale and can run here."""
    out = []
    for name in DEFAULT_METHOD_CANDIDATES:
        if name.startswith("esrgan-thick-x"):
            name = f"esrgan-thick-x{task.scale}"
            if task.scale not in (2, 3, 4, 8):
                continue
        if name in ("realesrgan-x4plus", "regression-demo", "sr3-demo") and task.scale != 4:
            continue  # 4x models
        ok, why = method_available(name)
        if ok:
            out.append(name)
        else:
            log(f"note: {name} left out of the default methods: {why}")
    return out


def _methods(spec: BenchmarkSpec, task: Task, say: Callable[[str], None]) -> list[tuple[str, str]]:
    """(method name, unique label) pairs; unknown names fail here, before any work."""
    names = list(spec.methods) or default_methods(task, say)
    if not names:
        raise ValueError("no methods to run; pass --methods (for example bicubic)")
    variants = expand_methods(names)  # sweeps (`sr3:m@steps=10,25`) and checkpoint globs, checked here
    out: list[tuple[str, str]] = []
    for v in variants:
        split_name(v.name)
        label = method_label(v.name)
        while label in [lab for _, lab in out]:
            label += "_"
        out.append((v.name, label))
    if D.is_main():
        write_sweeps(spec.out_dir, [(v, lab) for v, (_, lab) in zip(variants, out, strict=True)])
    return out


def _prepare(spec: BenchmarkSpec, task: Task, data_dir: Path, lr_dir: Path | None, say: Callable[[str], None]):
    """Prepare HR/LR once (rank 0) and share rank 0's image list -> (prep, ids, errors, index).

    The image set depends on the data and the task only, never on the metrics: an image too small for one
    metric is scored by the others and skipped by that one (skipped.csv).
    """
    prep = PreparedImages(spec.out_dir, task, data_dir, lr_dir, spec.degradation)
    prepared = None
    if D.is_main():
        ids, errors, index = prep.prepare(spec.limit, spec.workers, say)
        errors_csv = pd.DataFrame(errors, columns=["path", "reason"]).to_csv(index=False)
        atomic_write_text(spec.out_dir / "errors.csv", errors_csv)
        atomic_write_text(spec.out_dir / "spec.yaml", spec.to_yaml())
        for e in errors:
            say(f"skipped {e['path']}: {e['reason']}")
        prepared = (ids, errors, index)
    ids, errors, index = D.broadcast_object(prepared)  # the other ranks decode nothing
    if not ids:
        raise NoUsableImagesError(
            f"no usable image under {data_dir}: every file was skipped; see {spec.out_dir / 'errors.csv'}"
        )
    return prep, ids, errors, index


def _build_metrics(spec: BenchmarkSpec, task: Task, device: torch.device, say: Callable[[str], None]) -> RunMetrics:
    """The run's metrics: per-image ones built once; one without weights is noted, never faked."""
    names = resolve_metrics(spec.metrics)
    ctx = MetricContext(
        device=device,
        scale=task.scale,
        y_channel=spec.y_channel,
        crop_border=spec.crop_border,
        run_dir=spec.out_dir,
        options={**spec.metric_options, "seed": spec.seed},
        log=say,
    )
    key = {"metrics": names, "y": spec.y_channel, "crop": spec.crop_border, "opts": spec.metric_options, "v": 1}
    if spec.samples > 1:
        key["samples"] = spec.samples
    metrics = RunMetrics(names, ctx, key=stable_hash(key), samples=spec.samples)
    for name in names:
        if uses_samples(name) and spec.samples < 2:
            metrics.notes[name] = "needs --samples K with K >= 2 (K outputs per image)"
        elif metric_info(name).per_image:
            try:
                metrics.per_image[name] = build_metric(name, ctx)
            except MissingWeightsError as exc:
                metrics.notes[name] = str(exc)
                say(f"warning: {name} not computed: {exc}")
                continue
            if nonstandard_note(metrics.per_image[name]):
                metrics.nonstandard[name] = nonstandard_note(metrics.per_image[name])
    # Per-image metrics also as the mean over the K samples (the table's own column is sample 0).
    metrics.columns = [c for n in names for c in metric_info(n).column_names] + metrics.mean_columns()
    return metrics


def _reference_row(rc: RunContext) -> dict[str, Any] | None:
    """The HR images scored by metrics that have a `reference(ids, hr_dir)` (IS, classification)."""
    row: dict[str, Any] = {}
    notes: list[str] = []
    if rc.spec.lr_source:
        return None  # generated LR: the HR folder holds placeholders, no reference row
    for n in rc.metrics.names:
        if not metric_info(n).hr_row or n in rc.metrics.notes:
            continue  # FID/KID have no reference row: not built for nothing
        try:
            values = build_metric(n, rc.metrics.ctx).reference(rc.ids, rc.prep.hr_dir)
        except Exception as exc:  # the reference row is extra: it never sinks the run
            notes.append(f"{n}: reference not computed: {reason(exc)}")
            continue
        for c, mv in values.items():
            for suffix, x in (("", mv.value), ("_ci_low", mv.ci_low), ("_ci_high", mv.ci_high)):
                row[c + suffix] = math.nan if x is None else x
            if mv.note:
                notes.append(f"{c}: {mv.note}")
    if not row and not notes:
        return None
    return {"method": REFERENCE_ROW, "n_images": len(rc.ids), **row, "notes": "; ".join(notes)}


def _results(rc: RunContext, evaluated: list[MethodResult], errors: list[dict[str, str]], paired: bool) -> Results:
    """The run's tables: one summary row per method (+ the HR reference), per-image rows, skips and failures."""
    rows = [r.summary_row for r in evaluated]
    ref = _reference_row(rc)
    if ref is not None:
        rows.append(ref)
    notes = rc.metrics.notes
    run_notes = [f"{n}: {msg}" for n, msg in notes.items()] + version_notes(rc.metrics.names, notes)
    # Every value from non-standard weights says so where it is stored (summary notes, the per-image flag).
    run_notes += [f"{n}: {msg}" for n, msg in rc.metrics.nonstandard.items()]
    if rc.spec.lr_source:
        run_notes.append(NO_HR_NOTE.format(src=rc.spec.lr_source))
    elif paired and "consistency" in rc.metrics.columns:
        run_notes.append(f"consistency: {PAIRED_CONSISTENCY_NOTE}")
    if rc.spec.degradation != "bicubic":
        run_notes.append(f"degradation: LR made by {rc.spec.degradation}, not the paper's bicubic")
        if "consistency" in rc.metrics.columns:
            run_notes.append(f"consistency: {REALESRGAN_CONSISTENCY_NOTE}")
    empty = [c for c in rc.metrics.columns if column_metric(c) in notes]
    per_image = pd.DataFrame(
        [p for r in evaluated for p in r.per_image_rows], columns=["method", "image_id", *rc.metrics.columns]
    )
    flagged = rc.metrics.flagged_columns()
    if flagged:
        per_image[NONSTANDARD_COLUMN] = nonstandard_flags(per_image, flagged)
    return Results(
        rc.run_dir,
        assemble_summary(rows, rc.metrics.columns, empty, run_notes),
        per_image,
        pd.DataFrame(errors, columns=["path", "reason"]),
        pd.DataFrame([f for r in evaluated for f in r.failures], columns=FAILURE_COLUMNS),
        run_notes=run_notes,
        skipped=pd.DataFrame([s for r in evaluated for s in r.skipped], columns=SKIPPED_COLUMNS),
    )


def version_notes(names: list[str], not_computed: dict[str, str]) -> list[str]:
    """One run note per wrapped library whose version the numbers depend on (pyiqa): the columns it computed."""
    by_library: dict[tuple[str, str], list[str]] = {}
    for n in names:
        info = metric_info(n)
        if info.version and n not in not_computed:
            library = n.split(":", 1)[0]
            by_library.setdefault((library, info.version), []).extend(info.column_names)
    return [
        f"{lib}: {', '.join(cols)} computed by {lib} {v} with its own defaults (its colour handling, not "
        "--y-channel; the crop border applies)"
        for (lib, v), cols in by_library.items()
    ]


def _run_hooks(spec: BenchmarkSpec, say: Callable[[str], None]) -> None:
    """Call the spec's post-run hooks (the report first), then register the run in the results index (a
    failing hook never loses the numbers written)."""
    for target in (*spec.hooks, INDEX_HOOK):
        try:
            plugins.hook(target)(spec.out_dir)
        except Exception as exc:
            say(f"warning: post-run hook {target} failed: {reason(exc)}")


def run(spec: BenchmarkSpec, log=print, progress: bool = True) -> Results:
    """Run a benchmark spec end to end and return its Results (also written to the run folder)."""
    # The run sets torch's CPU threads by the machine's load (evalsuite.cpu); the caller gets its count back.
    threads_before = torch.get_num_threads()
    try:
        return _run(spec, log, progress)
    finally:
        torch.set_num_threads(threads_before)


def _run(spec: BenchmarkSpec, log, progress: bool) -> Results:
    """The steps of `run`."""
    t_start = time.time()
    reset_used_weights()  # manifest.json lists the metric weights files this run used
    device = D.pick_device(spec.device)
    D.init_from_env(device)
    device = D.local_rank_device(device)
    say = log if D.is_main() else (lambda *a, **k: None)
    if spec.lr_source:
        # Generated LR (--lr-source cascade:BASE): no HR; HR-free metrics only, checked before any work.
        task = resolve_task(spec.task, spec.scale)
        check_metrics(spec, resolve_metrics(spec.metrics))
    else:
        data_dir, lr_dir, task = resolve_inputs(spec.data, spec.lr, spec.task, spec.scale, DEFAULT_TASK)
    spec = spec.with_protocol(task.scale)  # --protocol basicsr: Y channel, crop border = scale
    spec.out_dir.mkdir(parents=True, exist_ok=True)
    methods = _methods(spec, task, say)
    if spec.lr_source:
        data_dir, lr_dir = generated_inputs(spec, task, device, say)

    threads = ThreadGovernor(fixed=spec.threads)
    threads.tick()
    # 1. Data: validated HR images and the one degradation's LR (or the given LR), prepared once and reused.
    prep, ids, errors, index = _prepare(spec, task, data_dir, lr_dir, say)
    say(f"task {task.name} (x{task.scale}), {len(ids)} images, {len(errors)} skipped, device {device}")
    if spec.degradation != "bicubic":
        say(f"LR made by the {spec.degradation} degradation (seeded per image id), in {spec.out_dir / 'lr'}")
    # 2. Metrics: per-image ones built once; a metric without weights is left empty with a note.
    metrics = _build_metrics(spec, task, device, say)
    rc = RunContext(
        spec=spec,
        task=task,
        device=device,
        run_dir=spec.out_dir,
        prep=prep,
        ids=ids,
        my_ids=ids[D.rank() :: D.world_size()],
        sizes={i: tuple(index["images"][i]["size"]) for i in ids},
        metrics=metrics,
        say=say,
        progress=progress,
        threads=threads,
    )
    # 3. Methods: missing outputs made and cached, every image streamed through the metrics.
    evaluated = [evaluate_method(rc, name, label) for name, label in methods]
    # 4. Summary: per-method means with bootstrap CIs, the HR reference row, skipped and failed images.
    results = _results(rc, evaluated, errors, paired=prep.paired)
    # 5. Files: the tables, the manifest, then the post-run hooks (the report) on rank 0.
    if D.is_main():
        results.write()
        write_manifest(
            spec.out_dir,
            spec,
            task,
            data_dir,
            inputs={i: index["images"][i]["sha256"] for i in ids},
            n_skipped=len(errors),
            methods={label: r.info for (_, label), r in zip(methods, evaluated) if r.info},
            metrics={n: metric_info(n).help for n in metrics.names},
            metric_notes={**metrics.notes, **metrics.nonstandard},
            nonstandard=metrics.nonstandard,
            paired=prep.paired,
            device=device,
            t_start=t_start,
            cpu_threads=threads.summary(),
        )
        _run_hooks(spec, say)
    D.barrier()
    return results
