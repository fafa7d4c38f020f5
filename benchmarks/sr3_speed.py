"""SR3 speed: forward latency, sampling time per image, training images per second, next to the anchors.

Anchors (environment.md, the popular public SR3 implementation on an H200, preset janspiry-16-128):
forward 11 ms at batch 1 and 56 ms at batch 64 (bf16 eager; 23 ms compiled), sampling 22 s per image
for its default 2000 steps, training 295 img/s (fp32, batch 32) and 363 img/s (bf16, batch 32; issue 31).
Targets of issue 7 on an H100/H200:
at most 25 ms per image for 100-step sampling, at least 1,000 training images per second.

GPU:  PYTHONPATH=. python benchmarks/sr3_speed.py --compile
CPU (quick):  python benchmarks/sr3_speed.py --device cpu --preset tiny --fwd-batches 1,4 --sample-batch 4 \
              --sample-steps 5 --train-batch 4 --repeats 3
Every figure is the median of --repeats timed runs after --warmup untimed ones (sampling: after one).
`--json FILE` also writes every figure with its anchor and target to FILE, rewritten after each part, so a run
stopped by a time limit keeps what it measured (benchmarks/gpu_check.sh reads it).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from baselines.sr3.model import SR3Config, SR3Denoiser
from baselines.sr3.recipe import SR3Options, SR3Recipe
from baselines.sr3.samplers import get_sampler, per_image_noise, per_image_normal
from baselines.sr3.schedule import linear
from baselines.train import Batch, Optimizers, optimizer_step
from baselines.unet import count_parameters, preset
from evalsuite.degrade import degrade
from evalsuite.distributed import pick_device

ANCHOR_FWD_MS = {1: 11.0, 64: 56.0}  # H200, bf16 eager, public implementation
ANCHOR_FWD_COMPILED_MS_64 = 23.0
ANCHOR_SAMPLE_S_PER_IMAGE = 22.0  # its default 2000 steps
ANCHOR_TRAIN_IMG_S = 295.0  # fp32, batch 32
ANCHOR_TRAIN_BF16_IMG_S = 363.0  # bf16, batch 32 (issue 31)
TARGET_SAMPLE_MS = 25.0
ANCHOR_DEVICE = "H200"  # a ratio to an anchor is printed only on this GPU: never across machines
TARGET_TRAIN_IMG_S = 1000.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time in seconds of `fn` over `repeats` runs (after `warmup` untimed runs)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_json(path: str | None, record: dict[str, Any]) -> None:
    """Write the figures so far to `path` (atomically: a reader never sees half a file); no-op without a path."""
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(out)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="janspiry-16-128")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--compile", action="store_true", help="torch.compile the U-Net (forward, sampling, training)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune (slow to compile)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (aot_eager: quick CPU checks)")
    p.add_argument("--size", type=int, default=0, help="image side in px (0: the preset's)")
    p.add_argument("--fwd-batches", default="1,64")
    p.add_argument("--sample-batch", type=int, default=64)
    p.add_argument("--sample-steps", type=int, default=100)
    p.add_argument("--train-batch", type=int, default=32)
    p.add_argument("--train-precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--skip", default="", help="comma-separated parts to skip: forward,sample,train")
    p.add_argument("--json", help="also write the figures (with anchors and targets) to this JSON file")
    return p.parse_args(argv)


@dataclass
class Bench:
    """What every part of the benchmark shares: the flags, the device, the model and the record being written."""

    a: argparse.Namespace
    device: torch.device
    name: str
    cfg: SR3Config
    model: SR3Denoiser
    size: int
    bf16: bool
    train_bf16: bool
    same: bool  # on the anchors' own kind of GPU: ratios are printed
    compiler: dict[str, Any]
    record: dict[str, Any]

    def ratio(self, text: str, value: float) -> str:
        """", TEXT VALUE" on the anchors' machine, nothing elsewhere (no ratios across machines)."""
        return f", {text} {value:.2f}" if self.same else ""

    def judged(self, ok: bool) -> str:
        """A target's verdict, judged on a GPU only."""
        return ("met" if ok else "not met") if self.device.type == "cuda" else "not judged on the CPU"

    def autocast(self) -> Any:
        """bf16 autocast when the benchmark runs in bf16."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def save(self) -> None:
        """Rewrite the JSON record (a timeout keeps the parts finished)."""
        write_json(self.a.json, self.record)


def setup(a: argparse.Namespace) -> Bench:
    """The device, the precision, the (compiled) model, the header lines and the record's first fields."""
    device = pick_device(a.device)
    bf16 = a.precision == "bf16" or (a.precision == "auto" and device.type == "cuda")
    train_bf16 = a.train_precision == "bf16" or (a.train_precision == "auto" and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        name = f"CPU ({torch.get_num_threads()} threads)"
    unet = preset(a.preset)
    size = a.size or unet.image_size
    cfg = SR3Config(unet=unet, scale=8, parameterization="eps", embedding="gamma")
    model = SR3Denoiser(cfg).to(device).eval().requires_grad_(False)
    # One static graph per batch size (dynamic=False): the figures are for fixed-shape serving and training.
    compiler = dict(mode=a.compile_mode, backend=a.compile_backend, dynamic=False)
    if a.compile:
        model.net = torch.compile(model.net, **compiler)
    print(
        f"device: {name}; torch {torch.__version__}; preset {a.preset} ({count_parameters(model) / 1e6:.1f}M "
        f"params, {size}px); {'bf16' if bf16 else 'fp32'} inference{', compiled' if a.compile else ''}; "
        f"median of {a.repeats}"
    )
    same = device.type == "cuda" and ANCHOR_DEVICE in name
    print("anchors: the public SR3 implementation on an H200 (environment.md)" + (
        "" if same else f"; this is not an {ANCHOR_DEVICE}, so no ratios (never across machines)"))
    if device.type != "cuda":
        print("targets are for an H100/H200: not judged on the CPU")
    record: dict[str, Any] = {
        "benchmark": "sr3_speed",
        "device": name,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "preset": a.preset,
        "params_m": round(count_parameters(model) / 1e6, 2),
        "size": size,
        "precision": "bf16" if bf16 else "fp32",
        "compiled": bool(a.compile),
        "compile_backend": a.compile_backend if a.compile else None,
        "repeats": a.repeats,
        "anchor_device": ANCHOR_DEVICE,
        "ratios_printed": same,
        "forward": {},
    }
    bench = Bench(a, device, name, cfg, model, size, bf16, train_bf16, same, compiler, record)
    bench.save()
    return bench


def bench_forward(k: Bench) -> None:
    """Forward latency at each batch size."""
    a, device, size = k.a, k.device, k.size
    for b in (int(x) for x in a.fwd_batches.split(",")):
        x = torch.randn(b, 3, size, size, device=device)
        g = torch.rand(b, device=device)

        def fwd(x=x, g=g):
            with torch.no_grad(), k.autocast():
                return k.model(x, x, g)

        ms = timed(fwd, device, a.repeats, a.warmup) * 1e3
        anchor = ANCHOR_FWD_MS.get(b)
        ref = f"anchor {anchor:.0f} ms (eager bf16){k.ratio('ratio anchor/this', anchor / ms)}" if anchor else \
            "no anchor"
        extra = f"; compiled anchor {ANCHOR_FWD_COMPILED_MS_64:.0f} ms" if b == 64 else ""
        print(f"forward  batch {b:>3}: {ms:9.2f} ms   [{ref}{extra}]")
        k.record["forward"][str(b)] = {
            "ms": round(ms, 3),
            "anchor_ms": anchor,
            "anchor_compiled_ms": ANCHOR_FWD_COMPILED_MS_64 if b == 64 else None,
            "anchor_note": "public SR3 implementation, H200, bf16 eager",
        }
        k.save()


def bench_sample(k: Bench) -> None:
    """Sampling: the ancestral sampler over a respaced schedule, per-image generators, as the method runs it."""
    a, device, size = k.a, k.device, k.size
    b, steps = a.sample_batch, a.sample_steps
    sched = linear(2000, 1e-6, 0.01).respace(steps)
    x_up = torch.randn(b, 3, size, size, device=device)
    gens = [torch.Generator(device=device).manual_seed(i) for i in range(b)]

    def denoise(y_t, gamma):
        with k.autocast():
            return k.model(x_up, y_t, gamma).clamp(-1, 1)

    def sample():
        with torch.no_grad():
            shape = (3, size, size)
            y_T = per_image_normal(shape, gens, device)  # noqa: N806 - the paper's name
            noise = per_image_noise(shape, gens, device)
            return get_sampler("ancestral")(denoise, y_T, sched.sampling_gammas(), noise)

    per_image_ms = timed(sample, device, a.repeats, 1) / b * 1e3
    per_100 = per_image_ms * 100 / steps
    anchor_100 = ANCHOR_SAMPLE_S_PER_IMAGE * 1e3 * 100 / 2000  # the same network, per 100 steps
    speedup = ANCHOR_SAMPLE_S_PER_IMAGE * 1e3 / per_image_ms
    verdict = k.judged(per_100 <= TARGET_SAMPLE_MS)
    print(
        f"sampling {steps} steps, batch {b}: {per_image_ms:9.2f} ms/image "
        f"(= {per_100:.2f} ms/image per 100 steps)   [anchor {ANCHOR_SAMPLE_S_PER_IMAGE:.0f} s/image for its "
        f"2000 steps = {anchor_100:.0f} ms per 100 steps{k.ratio('ratio anchor/this', anchor_100 / per_100)}; "
        f"{k.ratio('its default vs ours at ' + str(steps) + ' steps', speedup).lstrip(', ')}{'; ' if k.same else ''}"
        f"target <= {TARGET_SAMPLE_MS:.0f} ms/image per 100 steps: {verdict}]"
    )
    k.record["sample"] = {
        "steps": steps,
        "batch": b,
        "ms_per_image": round(per_image_ms, 3),
        "ms_per_image_per_100_steps": round(per_100, 3),
        "anchor_ms_per_100_steps": anchor_100,
        "anchor_note": f"{ANCHOR_SAMPLE_S_PER_IMAGE:g} s/image for the public implementation's 2000 steps, H200",
        "target_ms_per_100_steps": TARGET_SAMPLE_MS,
        "target_met": per_100 <= TARGET_SAMPLE_MS if device.type == "cuda" else None,
    }
    k.save()


def bench_train(k: Bench) -> None:
    """Training: one optimizer_step of the SR3 recipe (forward, backward, clip, Adam) on an in-memory batch."""
    a, device, size, cfg = k.a, k.device, k.size, k.cfg
    b = a.train_batch
    recipe = SR3Recipe(cfg, SR3Options())
    net = recipe.build_modules()["net"].to(device).train()
    run_net = torch.compile(net, **k.compiler) if a.compile else net
    optim = Optimizers(recipe.build_optimizers({"net": net}, 1e-4), grad_clip=1.0)
    hr = torch.rand(b, 3, size, size, device=device)
    batch = Batch(hr=hr, lr=degrade(hr, cfg.scale), scale=cfg.scale)

    def step():
        optimizer_step(recipe, {"net": run_net}, optim, [batch], 0, bf16=k.train_bf16)

    s = timed(step, device, a.repeats, a.warmup)
    ips = b / s
    precision = "bf16" if k.train_bf16 else "fp32"
    anchor_ips = ANCHOR_TRAIN_BF16_IMG_S if k.train_bf16 else ANCHOR_TRAIN_IMG_S
    print(
        f"training batch {b} ({precision}): {ips:9.1f} img/s   "
        f"[anchor {anchor_ips:.0f} img/s ({precision}, batch 32), "
        f"{k.ratio('ratio this/anchor', ips / anchor_ips).lstrip(', ')}{'; ' if k.same else ''}"
        f"target >= {TARGET_TRAIN_IMG_S:.0f}: {k.judged(ips >= TARGET_TRAIN_IMG_S)}]"
    )
    k.record["train"] = {
        "batch": b,
        "precision": precision,
        "img_per_s": round(ips, 3),
        "anchor_img_per_s": anchor_ips,
        "anchor_note": "public SR3 implementation, H200, batch 32",
        "target_img_per_s": TARGET_TRAIN_IMG_S,
        "target_met": ips >= TARGET_TRAIN_IMG_S if device.type == "cuda" else None,
    }
    k.save()


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print each figure next to its anchor."""
    k = setup(parse(argv))
    skip = set(filter(None, k.a.skip.split(",")))
    for part, bench in (("forward", bench_forward), ("sample", bench_sample), ("train", bench_train)):
        if part not in skip:
            bench(k)


if __name__ == "__main__":
    main()
