"""Write the shipped demo checkpoints (baselines/demo/*.safetensors) from trained ones, weights in fp16.

    python scripts/export_demo_models.py SR3.safetensors REGRESSION.safetensors

fp16 halves the files; the script prints how far fp16 outputs are from fp32 ones on random LR inputs
(regression: PSNR between the two outputs; SR3: the same with one seed), so the choice is checked.
"""

from __future__ import annotations

import sys

import torch

from baselines.checkpoint import load_checkpoint, save_checkpoint
from baselines.demo import demo_path
from evalsuite.methods import MethodContext, method_options


def export(src: str, name: str) -> None:
    """Copy a checkpoint to the demo folder with its floating-point weights in fp16."""
    ck = load_checkpoint(src)
    state = {k: v.half() if v.is_floating_point() else v for k, v in ck.state_dict.items()}
    save_checkpoint(demo_path(name), state, ck.kind, ck.config, ck.extra)


def check(src: str, name: str) -> float:
    """PSNR (dB) between outputs of the fp32 source and the fp16 demo checkpoint on a random 32 px LR batch."""
    from baselines.demo import build_regression_demo, build_sr3_demo
    from baselines.regression import build_regression
    from baselines.sr3.method import build_sr3

    ctx = MethodContext(4, options=method_options(name, {name: {"steps": 20, "tile": 8}} if name == "sr3-demo" else {}))
    full = (build_sr3 if name == "sr3-demo" else build_regression)(src, ctx)
    half = (build_sr3_demo if name == "sr3-demo" else build_regression_demo)(name, ctx)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a, b = full(x, ["a", "b"]), half(x, ["a", "b"])
    return float(10 * torch.log10(1 / (a - b).pow(2).mean()))


if __name__ == "__main__":
    for path, demo in zip(sys.argv[1:3], ("sr3-demo", "regression-demo")):
        export(path, demo)
        print(f"{demo}: {demo_path(demo)} ({demo_path(demo).stat().st_size / 1e6:.2f} MB), "
              f"fp16 vs fp32 outputs: {check(path, demo):.1f} dB PSNR")
