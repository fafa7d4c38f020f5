"""The steps of benchmarks/gpu_check.sh that no other benchmark script covers, and its bookkeeping.

    python benchmarks/gpu_steps.py machine --json F          # what the machine has (GPU, torch, CPU model + flags)
    python benchmarks/gpu_steps.py install --wheels .whl --site DIR --json F   # only the missing packages
    python benchmarks/gpu_steps.py metrics|realesrgan|diffusers|quality [--tiny] --json F
    python benchmarks/gpu_steps.py pytest --json F -- PYTEST_ARGS...
    python benchmarks/gpu_steps.py photos DEST [--tiny]       # held-out split photos when no copy travelled
    python benchmarks/gpu_steps.py record NAME ... / summary COMBINED   # gpu_check.sh's results file and table

Every figure is the median of several timed runs after a warm-up, with CUDA work finished before each clock
read. GPU figures are never divided by CPU figures of another machine: where no anchor was measured on the
same kind of machine, none is printed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchtools import cpu_facts, median_seconds  # noqa: E402,F401  (shared with the other scripts)

ROOT = Path(__file__).resolve().parents[1]
# (import name, distribution) of what the steps need beyond the GPU machine's image (environment.md):
# lpips (LPIPS heads), clean-fid (Inception features), torch-fidelity (IS, some tests), diffusers (the
# diffusers: method), importlib-metadata (diffusers imports it).
NEEDED = [
    ("lpips", "lpips"),
    ("cleanfid", "clean-fid"),
    ("torch_fidelity", "torch-fidelity"),
    ("diffusers", "diffusers"),
    ("importlib_metadata", "importlib-metadata"),
]


# ---------------------------------------------------------------------------------------------- helpers


def write_json(path: str | Path | None, record: dict[str, Any]) -> None:
    """Write `record` to `path` atomically (a reader never sees half a file); no-op without a path."""
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    tmp.replace(out)


def pick(device: str):
    """The torch device: auto -> cuda when there is one, else cpu."""
    import torch

    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        ("cpu" if device == "auto" else device))


# ---------------------------------------------------------------------------------------------- steps


def step_machine(args: argparse.Namespace) -> dict[str, Any]:
    """What the machine has: GPU (nvidia-smi, torch's view), torch/CUDA/cuDNN versions, CPU model and flags, load."""
    record: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(), "cpu": cpu_facts()}
    if shutil.which("nvidia-smi"):
        q = "name,driver_version,memory.total,clocks.max.sm,power.limit"
        r = subprocess.run(["nvidia-smi", f"--query-gpu={q}", "--format=csv,noheader"], capture_output=True, text=True)
        record["nvidia_smi"] = r.stdout.strip() or r.stderr.strip()
    else:
        record["nvidia_smi"] = "not found"
    try:
        import torch

        record["torch"] = torch.__version__
        record["cuda"] = torch.version.cuda
        record["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        record["cuda_available"] = torch.cuda.is_available()
        record["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        record["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            record["gpu"] = {
                "name": p.name,
                "capability": f"{p.major}.{p.minor}",
                "memory_gib": round(p.total_memory / 2**30, 1),
                "multiprocessors": p.multi_processor_count,
                "count": torch.cuda.device_count(),
            }
    except Exception as exc:  # a machine without torch still gets its facts recorded
        record["torch"] = f"unavailable: {type(exc).__name__}: {exc}"
    versions = {}
    for module, dist in [("torchvision", "torchvision"), ("torchmetrics", "torchmetrics"), ("triton", "triton"),
                         *NEEDED]:
        versions[dist] = _version(dist) if importlib.util.find_spec(module) else None
    record["packages"] = versions
    try:
        record["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                              text=True).stdout.strip() or None
    except OSError:
        record["git_commit"] = None
    gpu = record.get("gpu", {}).get("name", "no CUDA GPU")
    print(f"machine: {gpu}; torch {record.get('torch')} (CUDA {record.get('cuda')}); CPU {record['cpu']['model']}, "
          f"{record['cpu']['usable_cores']} cores, {' '.join(record['cpu']['isa_flags'])}; "
          f"load {record['cpu'].get('load_avg_1_5_15')}")
    return record


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "present (no metadata)"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def step_install(args: argparse.Namespace) -> dict[str, Any]:
    """Install, from the carried wheel folder, only the packages whose module is missing here (no network)."""
    wheels = Path(args.wheels)
    present, installed, missing = [], [], {}
    to_install = []
    for module, dist in NEEDED:
        if importlib.util.find_spec(module) is not None:
            present.append(dist)
            continue
        found = sorted(wheels.glob(f"{_norm(dist)}-*.whl")) if wheels.is_dir() else []
        if found:
            to_install.append(found[-1])
        else:
            missing[dist] = f"not installed and no wheel in {wheels}/ (run benchmarks/gpu_check.sh --prepare " \
                            "where the network allows)"
    if to_install:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--target", args.site, *map(str, to_install)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pip install from {wheels} failed: {r.stderr.strip()[-2000:]}")
        installed = [w.name for w in to_install]
    print(f"present: {', '.join(present) or '-'}; installed into {args.site}: {', '.join(installed) or '-'}; "
          f"missing: {', '.join(missing) or '-'}")
    return {"present": present, "installed": installed, "missing": missing, "site": args.site if installed else None}


def step_metrics(args: argparse.Namespace) -> dict[str, Any]:
    """Images/s at 256^2 (--size) of the engine's PSNR+SSIM+consistency, LPIPS (alex) and Inception features."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from feature_metrics import ensure_weights, make_images

    from evalsuite.degrade import degrade, quantize, upsample
    from evalsuite.metrics.base import MetricContext
    from evalsuite.metrics.pixel import PSNR, SSIM, Consistency

    device = pick(args.device)
    cuda = device.type == "cuda"
    n, size, batch = (4, 64, 4) if args.tiny else (args.n, args.size, args.batch)
    args.repeats = 1 if args.tiny else args.repeats
    hr = make_images(n, size)
    lr = quantize(degrade(hr, 4))
    sr = quantize(upsample(lr, 4))
    hr, lr, sr = hr.to(device), lr.to(device), sr.to(device)
    slices = [slice(k, k + batch) for k in range(0, n, batch)]
    record: dict[str, Any] = {"device": _device_name(device), "images": n, "size": size, "batch": batch,
                              "repeats": args.repeats, "img_per_s": {}, "not_measured": {},
                              "anchor_note": "no GPU anchor measured; CPU figures (docs/performance.md) are from "
                                             "another machine and are not divided into these"}
    ctx = MetricContext(device, 4)
    pixel = [PSNR(ctx), SSIM(ctx), Consistency(ctx)]

    def run_pixel() -> None:
        for s in slices:
            for m in pixel:
                m.update(sr[s], hr[s], lr[s], [])

    record["img_per_s"]["psnr+ssim+consistency"] = round(n / median_seconds(run_pixel, args.repeats, cuda), 2)
    write_json(args.json, record)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            which = ensure_weights(["lpips-alex", "inception-fid"], Path(tmp))
            record["weights"] = which
        except Exception as exc:  # clean-fid or lpips missing: those two figures are skipped with the reason
            which = None
            record["not_measured"]["lpips+inception"] = f"{type(exc).__name__}: {exc}"
        if which:
            from evalsuite.metrics.distribution import FID, to_uint8_hwc
            from evalsuite.metrics.perceptual import LPIPS

            for name, build, run in [
                ("lpips_alex", lambda: LPIPS(ctx), lambda m: [m.update(sr[s], hr[s], hr[s], []) for s in slices]),
                ("inception_features", lambda: FID(ctx),
                 lambda m: [m.extractor.features_u8(to_uint8_hwc(sr[s])) for s in slices]),
            ]:
                try:
                    metric = build()
                    seconds = median_seconds(lambda m=metric, run=run: run(m), args.repeats, cuda)
                    record["img_per_s"][name] = round(n / seconds, 2)
                except Exception as exc:
                    record["not_measured"][name] = f"{type(exc).__name__}: {exc}"
                write_json(args.json, record)
    for k, v in record["img_per_s"].items():
        print(f"{k:<28} {v:10.1f} images/s  ({size}^2, batch {batch}, {record['device']})")
    for k, v in record["not_measured"].items():
        print(f"{k:<28} not measured: {v}")
    return record


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def step_realesrgan(args: argparse.Namespace) -> dict[str, Any]:
    """realesrgan-x4plus 64 -> 256 images/s through the method itself (official or converted weights, else a
    randomly initialized RRDBNet of the same architecture: the same cost)."""
    import torch

    from baselines.gan.method import realesrgan_available
    from evalsuite.methods import MethodContext, build_method

    device = pick(args.device)
    cuda = device.type == "cuda"
    size, batch = (16, 2) if args.tiny else (64, args.batch)
    args.repeats = 1 if args.tiny else args.repeats
    ok, why = realesrgan_available()
    tmp = None
    if ok:
        weights = f"real weights ({why})"
    else:
        from baselines.gan.rrdbnet import RRDBNet, RRDBNetConfig
        from baselines.gan.weights import save_converted

        tmp = tempfile.mkdtemp()
        torch.manual_seed(0)
        save_converted(RRDBNet(RRDBNetConfig()), Path(tmp) / "realesrgan-x4plus.safetensors", "rrdbnet",
                       source="random init (gpu_steps.py): speed only")
        os.environ["EVALSUITE_WEIGHTS"] = tmp
        weights = f"randomly initialized RRDBNet x4plus (same architecture and cost; no real weights: {why})"
    method = build_method("realesrgan-x4plus", MethodContext(4, device))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from feature_metrics import make_images

    x = make_images(batch, 256)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="area").to(device)
    ids = [f"img{k}" for k in range(batch)]
    one = median_seconds(lambda: method(x[:1], ids[:1]), args.repeats, cuda)
    many = median_seconds(lambda: method(x, ids), args.repeats, cuda)
    record = {
        "device": _device_name(device),
        "input": f"{size}x{size} -> {size * 4}x{size * 4}",
        "precision": method.info.get("precision") if hasattr(method, "info") else None,
        "weights": weights,
        "batch": batch,
        "s_per_image_batch1": round(one, 5),
        "img_per_s": round(batch / many, 2),
        "anchor_note": "the ncnn runtime anchor of gan_speed.py runs on the CPU of another machine: no ratio",
    }
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"realesrgan-x4plus {record['input']} ({record['precision']}): {record['img_per_s']:.1f} images/s at batch "
          f"{batch}, {one * 1e3:.1f} ms at batch 1; {weights}")
    return record


def tiny_ldm_pipeline(dest: Path) -> None:
    """A randomly initialized tiny diffusers LDMSuperResolutionPipeline (4x) saved to `dest` (speed, wiring)."""
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel

    # Three levels: the decoder upsamples the latent 4x, as the published 4x model's does.
    vq = VQModel(in_channels=3, out_channels=3, latent_channels=3, block_out_channels=(16, 16, 16), layers_per_block=1,
                 down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                 norm_num_groups=8, num_vq_embeddings=64)
    unet = UNet2DModel(sample_size=16, in_channels=6, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=8)
    LDMSuperResolutionPipeline(vqvae=vq, unet=unet, scheduler=DDIMScheduler()).save_pretrained(str(dest))


def step_diffusers(args: argparse.Namespace) -> dict[str, Any]:
    """A tiny diffusers pipeline through the `diffusers:` method, when that method exists here: images/s.

    The method's module may offer `make_tiny_pipeline(dest)` (the pipeline type it runs); otherwise a tiny
    LDMSuperResolutionPipeline is used."""
    from evalsuite import methods

    registry = methods.registered_methods() if hasattr(methods, "registered_methods") else methods.REGISTRY
    if "diffusers" not in registry:
        print("diffusers: skipped: not available (no `diffusers:` method in this tree)")
        return {"skipped": "not available: no `diffusers:` method in this tree"}
    if importlib.util.find_spec("diffusers") is None:
        print("diffusers: skipped: the diffusers package is not installed (carry its wheel: gpu_check.sh --prepare)")
        return {"skipped": "not available: the diffusers package is not installed (gpu_check.sh --prepare)"}
    from evalsuite.cli import main as evalsuite_main

    device = pick(args.device)
    module = importlib.import_module(registry["diffusers"].target.partition(":")[0])
    maker = getattr(module, "make_tiny_pipeline", tiny_ldm_pipeline)
    n = 2 if args.tiny else args.n
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        maker(tmp / "pipe")
        photos = tmp / "photos"
        write_photos(photos, n, 128 if args.tiny else 256)
        times = []
        for k in range(2):  # the first run builds the pipeline and warms up; the second is timed the same way
            t0 = time.perf_counter()
            rc = evalsuite_main(["run", "benchmark", "--data", str(photos), "--scale", "4", "--methods",
                                 f"diffusers:{tmp / 'pipe'}", "--metrics", "psnr", "--device", device.type,
                                 "--out", str(tmp / f"run{k}")])
            times.append(time.perf_counter() - t0)
            if rc != 0:
                raise RuntimeError(f"evalsuite run benchmark with diffusers:{tmp / 'pipe'} returned {rc}")
    record = {"device": _device_name(device), "images": n, "pipeline": getattr(maker, "__name__", str(maker)),
              "seconds_whole_run": round(times[1], 3), "img_per_s_whole_run": round(n / times[1], 3)}
    print(f"diffusers tiny pipeline: {n} images in {times[1]:.2f} s (whole benchmark run, incl. loading)")
    return record


def step_pytest(args: argparse.Namespace) -> dict[str, Any]:
    """Run pytest with the given arguments; pass/fail/skip counts and the failing tests' names (JUnit XML)."""
    import xml.etree.ElementTree as ET

    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={xml}",
               *args.pytest_args]
        print("$", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd, cwd=ROOT)
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        failed, skipped = [], []
        if xml.exists():
            root = ET.parse(xml).getroot()
            for suite in root.iter("testsuite"):
                for k in counts:
                    counts[k] += int(suite.get(k, 0))
            for case in root.iter("testcase"):
                name = f"{case.get('classname')}::{case.get('name')}"
                if case.find("failure") is not None or case.find("error") is not None:
                    failed.append(name)
                elif (s := case.find("skipped")) is not None:
                    skipped.append(f"{name}: {s.get('message', '')}"[:300])
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    record = {"rc": rc, "counts": counts, "failed": failed, "skipped_tests": skipped[:50]}
    if rc not in (0, 5):  # 5: no test selected
        write_json(args.json, record)
        raise SystemExit(f"pytest returned {rc}: failed {failed}")
    return record


def write_photos(dest: Path, n: int, size: int) -> Path:
    """n real-photo crops (scikit-image's bundled photos) of size x size as PNG files in dest."""
    from PIL import Image

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from feature_metrics import make_images

    dest.mkdir(parents=True, exist_ok=True)
    x = make_images(n, size)
    for k, img in enumerate(x):
        arr = (img.permute(1, 2, 0) * 255).round().byte().numpy()
        Image.fromarray(arr).save(dest / f"photo{k:03d}.png")
    return dest


def step_photos(args: argparse.Namespace) -> dict[str, Any]:
    """Write the stand-in photo folder (used when no copy of ../shared/data/photos travelled)."""
    write_photos(Path(args.dest), 18 if args.tiny else 45, 96 if args.tiny else 256)
    return {"dest": args.dest}


def step_quality(args: argparse.Namespace) -> dict[str, Any]:
    """SR3 + regression trained for --seconds in all (steps fitted from a measured training rate), judged by
    sr3_quality.py's per-image held-out verdicts."""
    device = pick(args.device)
    work = Path(args.work or tempfile.mkdtemp())
    data = Path(args.data) if args.data and Path(args.data).is_dir() and any(Path(args.data).iterdir()) else None
    if data is None:
        data = write_photos(work / "photos", 18 if args.tiny else 45, 96 if args.tiny else 256)
        source = "stand-in: crops of scikit-image's bundled photos (no photo copy travelled)"
    else:
        source = str(data)
    if args.tiny:
        cfg = dict(preset="tiny", crop=32, batch=8, extra=["--scale", "4", "--eval-crop", "64"], sample_steps=5)
    else:
        cfg = dict(preset="small", crop=256, batch=64, extra=["--task", "imagenet-64-256", "--workers", "8"],
                   sample_steps=25)
    # Measure the training rate at this size (sr3_speed's train part), then fit the steps into the budget.
    rate_json = work / "rate.json"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import sr3_speed

    sr3_speed.main(["--preset", cfg["preset"], "--size", str(cfg["crop"]), "--device", device.type, "--skip",
                    "forward,sample", "--train-batch", str(cfg["batch"]), "--repeats", "3", "--warmup", "1",
                    "--json", str(rate_json)])
    ips = json.loads(rate_json.read_text())["train"]["img_per_s"]
    per_model = args.seconds / 2
    # 0.7: data loading, EMA, checkpoints and the first (slower) steps of a run.
    steps = max(20, int(0.7 * per_model * ips / cfg["batch"]))
    record: dict[str, Any] = {"device": _device_name(device), "data": source, "preset": cfg["preset"],
                              "crop": cfg["crop"], "batch": cfg["batch"], "train_img_per_s_measured": ips,
                              "train_seconds_budget": args.seconds, "steps_each": steps}
    write_json(args.json, record)
    cmd = [sys.executable, str(ROOT / "benchmarks" / "sr3_quality.py"), "--data", str(data), "--out",
           str(work / "q"), "--preset", cfg["preset"], "--crop", str(cfg["crop"]), "--steps", str(steps),
           "--batch-size", str(cfg["batch"]), "--device", device.type, "--sampler", "ddim", "--sample-steps",
           str(cfg["sample_steps"]), *cfg["extra"]]
    if not args.tiny:
        cmd += ["--lr", "2e-4", "--reg-lr", "1e-4", "--warmup", "500", "--ema", "0.9999"]
    print("$", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    record["seconds"] = round(time.perf_counter() - t0, 1)
    print(proc.stdout[-6000:])
    print(proc.stderr[-3000:], file=sys.stderr)
    if proc.returncode != 0:
        write_json(args.json, record)
        raise SystemExit(f"sr3_quality.py returned {proc.returncode}")
    lines = proc.stdout.splitlines()
    record["verdicts"] = [ln.strip() for ln in lines if re.search(r": (PASS|FAIL)$", ln.strip())]
    start = next((i for i, ln in enumerate(lines) if ln.startswith("held-out photos:")), None)
    end = next((i for i in range(start or 0, len(lines)) if start is not None and i > start and not lines[i].strip()),
               len(lines))
    record["table"] = "\n".join(lines[start:end]) if start is not None else None
    return record


# ---------------------------------------------------------------------------------------------- bookkeeping


def step_record(args: argparse.Namespace) -> None:
    """Merge one step's outcome (status, seconds, its JSON, the log's tail on failure) into the combined file."""
    combined = Path(args.combined)
    data = json.loads(combined.read_text()) if combined.exists() else {"steps": {}, "order": []}
    result = None
    if args.result and Path(args.result).exists():
        try:
            result = json.loads(Path(args.result).read_text())
        except json.JSONDecodeError as exc:
            result = {"unreadable": str(exc)}
    entry: dict[str, Any] = {"status": args.status, "rc": args.rc, "seconds": args.seconds, "budget_s": args.budget,
                             "result": result}
    if isinstance(result, dict) and isinstance(result.get("skipped"), str) and args.status == "ok":
        entry["status"] = "skipped"
        entry["reason"] = result["skipped"]
    if args.reason:
        entry["reason"] = args.reason
    if args.status in ("error", "timeout") and args.log and Path(args.log).exists():
        entry["log_tail"] = Path(args.log).read_text(errors="replace")[-3000:]
    data["steps"][args.name] = entry
    if args.name not in data["order"]:
        data["order"].append(args.name)
    if args.name == "machine" and isinstance(result, dict):
        data["machine"] = result
    for key in ("tiny", "total_budget_s", "started", "elapsed_s"):
        if getattr(args, key, None) is not None:
            data[key] = getattr(args, key)
    write_json(combined, data)


def _met(flag: bool | None) -> str:
    return "not judged on the CPU" if flag is None else ("met" if flag else "not met")


def headline(name: str, r: dict[str, Any] | None) -> str:
    """One line of a step's main figures, each beside its anchor and target where it has them."""
    if not isinstance(r, dict):
        return ""
    if name.startswith("sr3_"):
        parts = []
        for b, f in r.get("forward", {}).items():
            anchor = f" (anchor {f['anchor_ms']:g})" if f.get("anchor_ms") else ""
            parts.append(f"fwd b{b} {f['ms']:.1f} ms{anchor}")
        if "sample" in r:
            s = r["sample"]
            parts.append(f"sample {s['ms_per_image_per_100_steps']:.1f} ms/img/100 steps (anchor "
                         f"{s['anchor_ms_per_100_steps']:g}, target <= {s['target_ms_per_100_steps']:g}: "
                         f"{_met(s['target_met'])})")
        if "train" in r:
            t = r["train"]
            parts.append(f"train {t['img_per_s']:.1f} img/s (anchor {t['anchor_img_per_s']:g}, target >= "
                         f"{t['target_img_per_s']:g}: {_met(t['target_met'])})")
        return "; ".join(parts)
    if name == "machine":
        gpu = r.get("gpu", {}).get("name", "no CUDA GPU")
        return f"{gpu}; torch {r.get('torch')}; {r.get('cpu', {}).get('model')}"
    if name == "install":
        return f"installed {r.get('installed') or '-'}; missing {list(r.get('missing', {})) or '-'}"
    if name == "metrics":
        done = [f"{k} {v:g} img/s" for k, v in r.get("img_per_s", {}).items()]
        return "; ".join(done + [f"{k} not measured ({v[:80]})" for k, v in r.get("not_measured", {}).items()])
    if name == "realesrgan":
        return f"{r.get('img_per_s')} img/s ({r.get('input')}, batch {r.get('batch')})"
    if name == "diffusers":
        return r.get("skipped") or f"{r.get('img_per_s_whole_run')} img/s (whole run)"
    if name == "gpu_tests":
        c = r.get("counts", {})
        bad = c.get("failures", 0) + c.get("errors", 0)
        return f"{c.get('passed')} passed, {bad} failed, {c.get('skipped')} skipped"
    if name == "quality":
        verdicts = [v.split(":")[0] + " " + v.rsplit(":", 1)[1].strip() for v in r.get("verdicts", [])]
        return f"{r.get('steps_each')} steps each; " + ", ".join(verdicts)
    return ""


def step_summary(args: argparse.Namespace) -> None:
    """Print (and write next to the combined file) the short table of every step."""
    data = json.loads(Path(args.combined).read_text())
    lines = [f"gpu_check {'--tiny ' if data.get('tiny') else ''}on {headline('machine', data.get('machine'))}",
             f"{'step':<13} {'status':<8} {'s/budget':>10}  figures"]
    for name in data["order"]:
        e = data["steps"][name]
        what = e.get("reason") if e["status"] != "ok" else headline(name, e.get("result"))
        lines.append(f"{name:<13} {e['status']:<8} {e['seconds']:>4}/{e['budget_s']:<5}  {(what or '')[:300]}")
    text = "\n".join(lines)
    print(text)
    Path(args.combined).with_suffix(".txt").write_text(text + "\n")


def main(argv: list[str] | None = None) -> None:
    """Run one step (its JSON to --json) or one bookkeeping command."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", help="write the step's result here")
    common.add_argument("--tiny", action="store_true", help="toy sizes, for the CPU")
    common.add_argument("--device", default="auto")
    common.add_argument("--repeats", type=int, default=5)
    sub.add_parser("machine", parents=[common])
    p = sub.add_parser("install", parents=[common])
    p.add_argument("--wheels", default=".whl")
    p.add_argument("--site", default="/tmp/gpu-check-site")
    p = sub.add_parser("metrics", parents=[common])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p = sub.add_parser("realesrgan", parents=[common])
    p.add_argument("--batch", type=int, default=16)
    p = sub.add_parser("diffusers", parents=[common])
    p.add_argument("--n", type=int, default=8)
    p = sub.add_parser("pytest", parents=[common])
    p.add_argument("pytest_args", nargs=argparse.REMAINDER)
    p = sub.add_parser("photos", parents=[common])
    p.add_argument("dest")
    p = sub.add_parser("quality", parents=[common])
    p.add_argument("--seconds", type=float, default=300.0, help="training time for both models together")
    p.add_argument("--data", help="photo folder (default: crops of scikit-image's photos)")
    p.add_argument("--work", help="work folder (default: a temporary one)")
    p = sub.add_parser("record")
    p.add_argument("name")
    p.add_argument("--combined", required=True)
    p.add_argument("--status", required=True, choices=["ok", "error", "timeout", "skipped"])
    p.add_argument("--rc", type=int, default=0)
    p.add_argument("--seconds", type=int, default=0)
    p.add_argument("--budget", type=int, default=0)
    p.add_argument("--result")
    p.add_argument("--log")
    p.add_argument("--reason")
    p.add_argument("--tiny", type=int)
    p.add_argument("--total-budget-s", type=int)
    p.add_argument("--started")
    p.add_argument("--elapsed-s", type=int)
    p = sub.add_parser("summary")
    p.add_argument("combined")
    args = ap.parse_args(argv)
    if args.cmd == "record":
        step_record(args)
        return
    if args.cmd == "summary":
        step_summary(args)
        return
    if getattr(args, "pytest_args", None) and args.pytest_args[0] == "--":
        args.pytest_args = args.pytest_args[1:]
    steps = {"machine": step_machine, "install": step_install, "metrics": step_metrics, "realesrgan": step_realesrgan,
             "diffusers": step_diffusers, "pytest": step_pytest, "photos": step_photos, "quality": step_quality}
    result = steps[args.cmd](args)
    write_json(args.json, result)


if __name__ == "__main__":
    main()
