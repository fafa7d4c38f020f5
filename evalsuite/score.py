"""One method's evaluation: make its missing outputs, stream every image through the metrics, and gather.

Any exception raised for one image (reading its prepared files, the method, a metric's update) is
contained to that image: the batch is retried one image at a time, the image that still fails is listed in
failures.csv with the stage and the reason, and every other image is scored. A method failure drops the
image from that method's rows; a metric failure leaves only that metric's value empty for the image.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from PIL import Image
from tqdm import tqdm

from evalsuite import distributed as D
from evalsuite.cache import MetricCache, method_key, reset_stale_outputs
from evalsuite.cpu import ThreadGovernor, pixel_chunks
from evalsuite.degrade import quantize, to_image, to_tensor
from evalsuite.io import atomic_write_text, save_png
from evalsuite.methods import Method, MethodContext, build_method, method_options, options_dict
from evalsuite.metrics.base import Metric, MetricContext, MetricValue, build_metric, metric_info, nonstandard_note
from evalsuite.prepare import PreparedImages
from evalsuite.results import summary_row
from evalsuite.spec import BenchmarkSpec, stable_hash
from evalsuite.tasks import Task
from evalsuite.weights import MissingWeightsError

T = TypeVar("T")


@dataclass
class RunMetrics:
    """The run's metrics: names, the per-image ones (built once), and why any are left empty."""

    names: list[str]
    ctx: MetricContext
    per_image: dict[str, Metric] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # metric -> why its columns are empty
    nonstandard: dict[str, str] = field(default_factory=dict)  # metric -> its NON-STANDARD weights note
    columns: list[str] = field(default_factory=list)  # every metric column, in order
    key: str = ""  # what per-image values depend on (metrics and their conventions)
    samples: int = 1  # K outputs per image of stochastic methods
    _limits: dict[str, tuple[int, str]] = field(default_factory=dict)

    def size_limit(self, name: str) -> tuple[int, str]:
        """(smallest HR side the metric can score, the reason in words); a metric not computed has none."""
        if name in self.notes:
            return 1, ""
        if name not in self._limits:
            side = metric_info(name).min_size(self.ctx)
            border = f", crop border {self.ctx.crop_border}" if self.ctx.crop_border else ""
            self._limits[name] = (side, f"{name} needs at least {side} px per side{border}")
        return self._limits[name]

    def too_small(self, name: str, size: tuple[int, int]) -> str:
        """Why the metric cannot score an HR image of size (w, h), or '' when it can."""
        side, why = self.size_limit(name)
        if min(size) >= side:
            return ""
        return f"too small for {name}: the HR is {size[0]}x{size[1]}; {why}"

    def mean_columns(self) -> list[str]:
        """With K > 1 samples: each single-output per-image column's mean over the samples."""
        if self.samples < 2:
            return []
        return [mean_column(c) for n, m in self.per_image.items() if not uses_samples(n) for c in m.columns]

    def per_image_columns(self) -> list[str]:
        """The columns of the per-image metrics that were built (with their means over samples)."""
        return [c for m in self.per_image.values() for c in m.columns] + self.mean_columns()

    def build_dataset_metrics(self, say: Callable[[str], None]) -> dict[str, Metric]:
        """Fresh dataset-level metrics (FID, KID, IS, classification) for one method."""
        out: dict[str, Metric] = {}
        for n in self.names:
            if not metric_info(n).per_image and n not in self.notes:
                try:
                    out[n] = build_metric(n, self.ctx)
                except MissingWeightsError as exc:
                    self.notes[n] = str(exc)
                    say(f"warning: {n} not computed: {exc}")
                    continue
                note = nonstandard_note(out[n])
                if note:
                    self.nonstandard[n] = note
        return out

    def flagged_columns(self) -> dict[str, str]:
        """Per-image columns whose values come from non-standard weights -> their metric."""
        return {c: n for n, m in self.per_image.items() if n in self.nonstandard for c in m.columns} | {
            mean_column(c): n
            for n, m in self.per_image.items()
            if n in self.nonstandard and self.samples > 1 and not uses_samples(n)
            for c in m.columns
        }


@dataclass(frozen=True)
class RunContext:
    """What every method's evaluation shares within one run."""

    spec: BenchmarkSpec
    task: Task
    device: torch.device
    run_dir: Path
    prep: PreparedImages
    ids: list[str]  # every usable image, in id order
    my_ids: list[str]  # this rank's shard
    sizes: dict[str, tuple[int, int]]
    metrics: RunMetrics
    say: Callable[[str], None]
    progress: bool = True
    threads: ThreadGovernor = field(default_factory=ThreadGovernor)  # torch CPU threads by free cores


@dataclass
class MethodResult:
    """One method's summary row, per-image rows, failed images and settings."""

    summary_row: dict[str, Any]
    per_image_rows: list[dict[str, Any]]
    failures: list[dict[str, str]]
    info: dict[str, Any]
    skipped: list[dict[str, str]] = field(default_factory=list)  # (image, metric) pairs too small for it


def uses_samples(name: str) -> bool:
    """Whether a metric scores the K samples of an image together (diversity) rather than one output."""
    return metric_info(name).uses_samples


def mean_column(col: str) -> str:
    """The column of a per-image metric's mean over the K samples (with --samples K > 1)."""
    return f"{col}_samples_mean"


def reason(exc: BaseException) -> str:
    """An exception as a one-line reason."""
    return f"{type(exc).__name__}: {exc}".replace("\n", " ")


def contained(fn: Callable[[list[int]], T], n: int) -> tuple[list[tuple[list[int], T]], dict[int, str]]:
    """Call fn on the indices 0..n-1 together; if that raises, on each alone -> (results, {index: reason})."""
    every = list(range(n))
    try:
        return [(every, fn(every))], {}
    except Exception as exc:  # contained: the images are retried one by one below
        if n == 1:
            return [], {0: reason(exc)}
    ok, bad = [], {}
    for k in every:
        try:
            ok.append(([k], fn([k])))
        except Exception as exc:
            bad[k] = reason(exc)
    return ok, bad


def batches(ids: Sequence[str], sizes: dict[str, tuple[int, int]], batch_size: int) -> list[list[str]]:
    """Consecutive ids grouped into batches of equal image size."""
    out: list[list[str]] = []
    for i in ids:
        if out and len(out[-1]) < batch_size and sizes[out[-1][0]] == sizes[i]:
            out[-1].append(i)
        else:
            out.append([i])
    return out


def _read_png(path: Path | None) -> torch.Tensor | str | None:
    """A PNG as a (3,H,W) tensor, the reason it could not be read, or None for no path."""
    if path is None:
        return None
    try:
        with Image.open(path) as im:
            return to_tensor(im.convert("RGB"))
    except Exception as exc:  # contained to this image
        return f"could not read {path}: {reason(exc)}"


def loader(paths: list[list[Path | None]], workers: int) -> Iterator[list[torch.Tensor | str | None]]:
    """Decode PNG batches in worker threads, a few batches ahead."""
    ahead = 3

    def read(batch: list[Path | None]) -> list[torch.Tensor | str | None]:
        return [_read_png(p) for p in batch]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # A queue of the next few batches only: a batch's pixels are dropped once it is handed on.
        pending = deque(pool.submit(read, b) for b in paths[:ahead])
        for i in range(len(paths)):
            if i + ahead < len(paths):
                pending.append(pool.submit(read, paths[i + ahead]))
            yield pending.popleft().result()


class WrongShapeError(ValueError):
    """A method returned an output of the wrong shape (its own message is the reason)."""


def call_method(method: Method, x_lr: torch.Tensor, ids: list[str], scale: int) -> list[torch.Tensor | str]:
    """Run a method on a batch; per image, its output or the reason it failed (one bad image fails alone)."""

    def run(idx: list[int]) -> torch.Tensor:
        with torch.no_grad():
            out = method(x_lr[idx], [ids[k] for k in idx]).float()
        expected = (len(idx), 3, x_lr.shape[-2] * scale, x_lr.shape[-1] * scale)
        if tuple(out.shape) != expected:
            raise WrongShapeError(f"method returned shape {tuple(out.shape)}, expected {expected}")
        return out

    results: list[torch.Tensor | str] = [""] * len(ids)
    ok, bad = contained(run, len(ids))
    for idx, out in ok:
        for k, o in zip(idx, out):
            results[k] = o if torch.isfinite(o).all() else "output holds NaN or Inf"
    shape_error = f"{WrongShapeError.__name__}: "
    for k, why in bad.items():
        results[k] = why.removeprefix(shape_error) if why.startswith(shape_error) else f"method raised {why}"
    return results


class LazyMethod:
    """Builds a method on first use (a fully cached rerun never loads a model); remembers a build error."""

    def __init__(self, rc: RunContext, name: str, options: Any, info_path: Path) -> None:
        self.rc, self.name, self.options, self.info_path = rc, name, options, info_path
        self.method: Method | None = None
        self.error = ""
        self.info: dict[str, Any] = json.loads(info_path.read_text()) if info_path.exists() else {}

    def get(self) -> Method | None:
        """The built method, or None when it could not be built (`error` says why)."""
        if self.method is None and not self.error:
            rc = self.rc
            try:
                ctx = MethodContext(rc.task.scale, rc.device, rc.spec.seed, self.options)
                self.method = build_method(self.name, ctx)
                self.info = {
                    "spec": self.name,
                    "stochastic": bool(getattr(self.method, "stochastic", False)),
                    **dict(getattr(self.method, "info", {}) or {}),
                    **({"hf": self.method.hub_source} if getattr(self.method, "hub_source", None) else {}),
                }
                if D.is_main():
                    atomic_write_text(self.info_path, json.dumps(self.info, default=str))
            except Exception as exc:  # a method that cannot be built fails alone, with its reason
                self.error = reason(exc)
                rc.say(f"error: method {self.name} could not be built: {self.error}")
        return self.method

    def stochastic(self) -> bool:
        """Whether the method draws different outputs for different seeds (known without a build when cached)."""
        if "stochastic" not in self.info:
            self.get()
        return bool(self.info.get("stochastic", False))


@dataclass
class _Method:
    """One method's evaluation state on this rank."""

    label: str
    out_dir: Path
    cache: MetricCache
    dataset_metrics: dict[str, Metric]
    lazy: LazyMethod
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    generated: int = 0

    def fail(self, image_id: str, stage: str, why: str) -> None:
        """List an image that failed at a stage (input, method, metric:<name>), with the reason."""
        self.failures.append({"method": self.label, "image_id": image_id, "stage": stage, "reason": why})


def _generate(rc: RunContext, st: _Method, lr: torch.Tensor, ids: list[str]) -> dict[str, torch.Tensor]:
    """Run the method on LR images without outputs; save each valid output (8-bit, atomically)."""
    method = st.lazy.get()
    if method is None:
        for i in ids:
            st.fail(i, "method", f"method not built: {st.lazy.error}")
        return {}
    t0 = time.perf_counter()
    outs = call_method(method, lr, ids, rc.task.scale)
    st.seconds += time.perf_counter() - t0
    made = {}
    for i, out in zip(ids, outs):
        if isinstance(out, str):
            st.fail(i, "method", out)
            continue
        sr = quantize(out)  # scored as saved: 8-bit
        save_png(to_image(sr), st.out_dir / f"{i}.png")
        made[i] = sr
        st.generated += 1
    return made


def _metric_values(
    metrics: dict[str, Metric],
    call: Callable[[Metric, list[int]], dict[str, torch.Tensor]],
    ids: list[str],
    fits: Callable[[str, str], bool] = lambda name, image_id: True,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, str]]]:
    """Per-image values of several metrics ({id: {column: value}}) and failures ({id: {metric: reason}}).

    A metric sees only the images it `fits` (its size limit); the others get no value from it, no failure.
    """
    values: dict[str, dict[str, float]] = {i: {} for i in ids}
    failed: dict[str, dict[str, str]] = {i: {} for i in ids}
    for name, m in metrics.items():
        keep = [k for k, i in enumerate(ids) if fits(name, i)]
        if not keep:
            continue
        ok, bad = contained(lambda sub, m=m, keep=keep: call(m, [keep[j] for j in sub]) or {}, len(keep))
        for sub, vals in ok:
            for c in m.columns:
                for j, s in enumerate(sub):
                    values[ids[keep[s]]][c] = float(vals[c][j])
        for s, why in bad.items():
            failed[ids[keep[s]]][name] = why
    return values, failed


def _joined(parts: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Per-image values of consecutive chunks of a batch, joined column by column."""
    parts = [p for p in parts if p]
    if len(parts) < 2:
        return parts[0] if parts else {}
    return {
        c: torch.cat([torch.as_tensor(p[c]).reshape(-1) for p in parts])
        if isinstance(parts[0][c], torch.Tensor)
        else [v for p in parts for v in p[c]]
        for c in parts[0]
    }


def _score(
    rc: RunContext,
    st: _Method,
    samples: torch.Tensor,
    hr: torch.Tensor,
    lr: torch.Tensor,
    ids: list[str],
) -> None:
    """Stream a batch's valid outputs (K,B,3,H,W; K=1 unless --samples) through every metric.

    Metrics score sample 0; with K > 1 each per-image metric's mean over the samples is kept too, and the
    diversity metrics see all K. A metric failing on an image leaves that image's value empty, nothing else.
    """
    single = {n: m for n, m in rc.metrics.per_image.items() if not uses_samples(n)}
    multi = {n: m for n, m in rc.metrics.per_image.items() if uses_samples(n)}
    sr = samples[0]

    def fits(name: str, image_id: str) -> bool:
        return not rc.metrics.too_small(name, rc.sizes[image_id])

    def sized(call: Callable[[Metric, list[int]], dict[str, torch.Tensor]]):
        # On a CPU a metric call gets at most PIXEL_BUDGET pixels: big images go one at a time.
        if rc.device.type != "cpu":
            return call
        h, w = hr.shape[-2:]
        return lambda m, idx: _joined([call(m, [idx[j] for j in c]) for c in pixel_chunks(len(idx), h, w)])

    def on(k: int) -> Callable[[Metric, list[int]], dict[str, torch.Tensor]]:
        return sized(lambda m, idx: m.update(samples[k][idx], hr[idx], lr[idx], [ids[j] for j in idx]))

    values, failed = _metric_values(single, on(0), ids, fits)
    more, more_failed = _metric_values(
        multi,
        sized(lambda m, idx: m.update_samples(samples[:, idx], hr[idx], lr[idx], [ids[j] for j in idx])),
        ids,
        fits,
    )
    for i in ids:
        values[i].update(more[i])
        failed[i].update(more_failed[i])
    if rc.metrics.samples > 1:
        # The mean over the K samples of every single-output metric (sample 0 alone for a deterministic method).
        per_k = [values] + [_metric_values(single, on(k), ids, fits)[0] for k in range(1, samples.shape[0])]
        for i in ids:
            for m in single.values():
                for c in m.columns:
                    vals = [v[i][c] for v in per_k if v[i].get(c) is not None]
                    values[i][mean_column(c)] = sum(vals) / len(vals) if vals else None
    for name, m in st.dataset_metrics.items():
        keep = [k for k, i in enumerate(ids) if fits(name, i)]
        if not keep:
            continue

        def feed(idx: list[int], m: Metric = m, keep: list[int] = keep) -> None:
            at = [keep[j] for j in idx]
            m.update(sr[at], hr[at], lr[at], [ids[k] for k in at])

        _, bad = contained(feed, len(keep))
        for k, why in bad.items():
            failed[ids[keep[k]]][name] = why
    for i in ids:
        for name, why in failed[i].items():
            st.fail(i, f"metric:{name}", why)
    # Dataset-level failures are not cached: they are found again when the statistics are rebuilt.
    st.cache.add(values, {i: {n: w for n, w in f.items() if n in rc.metrics.per_image} for i, f in failed.items()})


def _extra_samples(rc: RunContext, st: _Method, lr: torch.Tensor, ids: list[str]) -> dict[str, list[torch.Tensor]]:
    """Samples 1..K-1 of each image (outputs/<label>/samples/s<k>/<id>.png), read or drawn with seeds from
    '<id>#s<k>'; an image whose draw fails is failed for the method."""
    out: dict[str, list[torch.Tensor]] = {i: [] for i in ids}
    for k in range(1, rc.metrics.samples):
        folder = st.out_dir / "samples" / f"s{k}"
        folder.mkdir(parents=True, exist_ok=True)
        todo = []
        for j, i in enumerate(ids):
            got = _read_png(folder / f"{i}.png") if (folder / f"{i}.png").exists() else None
            if isinstance(got, torch.Tensor):
                out[i].append(got.to(rc.device))
            else:
                todo.append(j)
        method = st.lazy.get() if todo else None
        if todo:
            ks = [f"{ids[j]}#s{k}" for j in todo]
            outs = call_method(method, lr[todo], ks, rc.task.scale) if method else [st.lazy.error] * len(todo)
            for j, o in zip(todo, outs):
                if isinstance(o, str):
                    st.fail(ids[j], "method", f"sample {k}: {o}")
                    continue
                o = quantize(o)
                save_png(to_image(o), folder / f"{ids[j]}.png")
                out[ids[j]].append(o)
    return {i: v for i, v in out.items() if len(v) == rc.metrics.samples - 1}


def _stack_samples(rc: RunContext, st: _Method, sr: dict[str, torch.Tensor], lr: torch.Tensor, ids: list[str]):
    """(K,B,3,H,W) samples of the images (K=1 without --samples or for a deterministic method), and their ids."""
    if rc.metrics.samples < 2 or not st.lazy.stochastic():
        return torch.stack([sr[i] for i in ids])[None], ids
    extra = _extra_samples(rc, st, lr, ids)
    keep = [i for i in ids if i in extra]
    if not keep:
        return None, []
    return torch.stack([torch.stack([sr[i], *extra[i]]) for i in keep], dim=1), keep


def _plan(rc: RunContext, st: _Method) -> list[tuple[list[str], list[str]]]:
    """This rank's batches that need work -> (ids, ids without outputs)."""
    work = []
    for b in batches(rc.my_ids, rc.sizes, rc.spec.batch_size):
        missing = [i for i in b if not (st.out_dir / f"{i}.png").exists()]
        if missing or st.dataset_metrics or not all(st.cache.done(i) for i in b):
            work.append((b, missing))
    return work


def _process(rc: RunContext, st: _Method, b: list[str], missing: list[str], tensors: list[Any]) -> None:
    """One batch: read inputs, make missing outputs, score the valid ones."""
    n = len(b)
    hr_t, lr_t, sr_t = tensors[:n], tensors[n : 2 * n], tensors[2 * n :]
    sr: dict[str, torch.Tensor] = {}
    for k, i in enumerate(b):
        if isinstance(hr_t[k], str) or isinstance(lr_t[k], str):
            st.fail(i, "input", next(t for t in (hr_t[k], lr_t[k]) if isinstance(t, str)))
        elif isinstance(sr_t[k], torch.Tensor):
            sr[i] = sr_t[k].to(rc.device)
    usable = [k for k, i in enumerate(b) if not isinstance(hr_t[k], str) and not isinstance(lr_t[k], str)]
    # Outputs missing or unreadable are made (again).
    todo = [k for k in usable if b[k] not in sr]
    if todo:
        lr = torch.stack([lr_t[k] for k in todo]).to(rc.device)
        sr.update(_generate(rc, st, lr, [b[k] for k in todo]))
    ok = [k for k in usable if b[k] in sr]
    if ok:
        ids_ok = [b[k] for k in ok]
        lr = torch.stack([lr_t[k] for k in ok]).to(rc.device)
        samples, kept = _stack_samples(rc, st, sr, lr, ids_ok)
        if kept:
            pos = [ids_ok.index(i) for i in kept]
            hr = torch.stack([hr_t[ok[p]] for p in pos]).to(rc.device)
            _score(rc, st, samples, hr, lr[pos], kept)


def _stream(rc: RunContext, st: _Method) -> None:
    """Every batch of this rank that needs work, decoded ahead in threads."""
    work = _plan(rc, st)
    bar = tqdm(total=len(rc.my_ids), desc=st.label, disable=not (rc.progress and D.is_main()), leave=False)
    bar.update(len(rc.my_ids) - sum(len(b) for b, _ in work))
    hr_dir, lr_dir = rc.prep.hr_dir, rc.prep.lr_dir
    paths = [
        [hr_dir / f"{i}.png" for i in b]
        + [lr_dir / f"{i}.png" for i in b]
        + [None if i in missing else st.out_dir / f"{i}.png" for i in b]
        for b, missing in work
    ]
    for (b, missing), tensors in zip(work, loader(paths, rc.spec.workers)):
        rc.threads.tick()  # one torch thread per free core, as other processes come and go
        _process(rc, st, b, missing, tensors)
        bar.update(len(b))
    bar.close()


def _dataset_values(rc: RunContext, st: _Method) -> tuple[dict[str, MetricValue], list[str]]:
    """Dataset-level values (after metrics that drive the method on their own inputs), and notes."""
    notes: list[str] = []
    for n, m in st.dataset_metrics.items():
        if metric_info(n).drives_method and st.lazy.get() is not None:
            try:
                m.evaluate(st.lazy.method, rc.my_ids, rc.prep.hr_dir)
            except Exception as exc:  # the metric fails alone
                notes.append(f"{n}: the metric's own evaluation failed: {reason(exc)}")
    values: dict[str, MetricValue] = {}
    for n, m in st.dataset_metrics.items():
        try:
            values.update(m.compute())  # all-reduces its statistics across ranks
        except MissingWeightsError as exc:
            rc.metrics.notes[n] = str(exc)
        except Exception as exc:  # one metric's compute failing leaves its columns empty, nothing else
            notes.append(f"{n}: not computed: {reason(exc)}")
            rc.say(f"warning: {st.label}: {n} not computed: {reason(exc)}")
    return values, notes


def _dataset_counts(
    rc: RunContext, st: _Method, scored: list[str], skipped: list[dict[str, str]], failures: list[dict[str, str]]
) -> dict[str, int]:
    """How many images each dataset-level column is over: the scored ones less those skipped or failed for it."""
    out: dict[str, int] = {}
    for n in st.dataset_metrics:
        if metric_info(n).drives_method:
            continue  # it scores its own inputs
        left_out = {s["image_id"] for s in skipped if s["metric"] == n}
        left_out |= {f["image_id"] for f in failures if f["stage"] == f"metric:{n}"}
        count = len(scored) - len(left_out & set(scored))
        for c in metric_info(n).column_names:
            out[c] = count
    return out


def _skip_and_failure_messages(
    rc: RunContext, skipped: list[dict[str, str]], failures: list[dict[str, str]]
) -> list[tuple[str, str]]:
    """(level, line) per metric that skipped images and per stage that failed some: which, how many, where."""
    out = []
    by_metric: dict[str, int] = {}
    for s in skipped:
        by_metric[s["metric"]] = by_metric.get(s["metric"], 0) + 1
    for n, k in by_metric.items():
        _, why = rc.metrics.size_limit(n)
        line = f"{n} skipped {k} image(s) too small for it ({why}; see skipped.csv); other metrics kept them"
        out.append(("note", line))
    by_stage: dict[str, set[str]] = {}
    for f in failures:
        by_stage.setdefault(f["stage"], set()).add(f["image_id"])
    for stage, images in by_stage.items():
        if stage.startswith("metric:"):
            what = f"{stage.removeprefix('metric:')} failed on {len(images)} image(s)"
        elif stage == "method":
            what = f"the method failed on {len(images)} image(s) (left out of every metric)"
        else:
            what = f"{len(images)} image(s) failed at the {stage} stage (left out of every metric)"
        out.append(("warning", f"{what} (see failures.csv)"))
    return out


def evaluate_method(rc: RunContext, name: str, label: str) -> MethodResult:
    """Generate a method's missing outputs, score every image, and summarize (this rank's shard, gathered)."""
    options = method_options(name, rc.spec.method_options)
    mkey = method_key(name, options_dict(options), rc.spec.seed, rc.task.name, rc.prep.key)
    out_dir = reset_stale_outputs(rc.run_dir, label, mkey, rc.say)
    cache = MetricCache(rc.run_dir / ".cache" / "metrics", label, stable_hash([mkey, rc.metrics.key]))
    lazy = LazyMethod(rc, name, options, out_dir / ".info.json")
    st = _Method(label, out_dir, cache, rc.metrics.build_dataset_metrics(rc.say), lazy)
    _stream(rc, st)
    ds_values, notes = _dataset_values(rc, st)

    # Gather this method's failures and per-image values from every rank.
    failures = [f for part in D.gather_objects(st.failures) for f in part]
    mine = {i: cache.values[i] for i in rc.my_ids if i in cache.values}
    rows = {i: v for part in D.gather_objects(mine) for i, v in part.items()}
    dropped = {f["image_id"] for f in failures if not f["stage"].startswith("metric:")}
    scored = [i for i in rc.ids if i in rows and i not in dropped]
    cols = rc.metrics.columns
    per_image_rows = [{"method": label, "image_id": i, **{c: rows[i].get(c) for c in cols}} for i in scored]
    # Images a metric cannot score (its size limit): that metric's cell stays empty, every other is kept.
    built = [*rc.metrics.per_image, *st.dataset_metrics]
    skipped = [
        {"method": label, "image_id": i, "metric": n, "reason": why}
        for i in scored
        for n in built
        if (why := rc.metrics.too_small(n, rc.sizes[i]))
    ]
    row = summary_row(
        label,
        {i: rows[i] for i in scored},
        rc.metrics.per_image_columns(),
        rc.metrics.columns,
        ds_values,
        rc.spec.bootstrap,
        rc.spec.seed,
        dataset_counts=_dataset_counts(rc, st, scored, skipped, failures),
    )
    notes = [row["notes"], *notes] if row["notes"] else notes
    for level, message in _skip_and_failure_messages(rc, skipped, failures):
        notes.append(message)
        rc.say(f"{level}: {label}: {message}")
    if lazy.error:
        notes.append(f"method not built: {lazy.error}")
    row["notes"] = "; ".join(notes)
    info = dict(lazy.info) or {"spec": name}
    if st.generated:
        # Kept with the outputs, so a rerun that generates nothing still reports the method's speed.
        info["seconds_per_image"] = st.seconds / st.generated
        if D.is_main():
            atomic_write_text(out_dir / ".info.json", json.dumps(info, default=str))
    return MethodResult(row, per_image_rows, failures, info, skipped)
