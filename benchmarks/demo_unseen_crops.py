"""Write the 96 crops the demo models were never trained or tuned on (baselines/demo/MODEL_CARD.md, top).

48 off-centre 128 px crops of the 12 held-out photos of `sr3_quality.py`'s split (centred at a quarter and three
quarters of each side, so none overlaps the central tuning crop) and 4 such crops of each of 12 scikit-image
photos (5 colour, 7 grey; the grey ones saved as RGB with R = G = B). Then judge the demo models on them:
    python benchmarks/demo_unseen_crops.py --photos ../shared/data/photos --out runs/unseen
    python benchmarks/sr3_quality.py --sr3 baselines/demo/sr3-demo.safetensors \
        --regression baselines/demo/regression-demo.safetensors --train-data runs/unseen --eval-data runs/unseen \
        --sampler ddim --sample-steps 25 --out runs/q-unseen
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from evalsuite.datasets import IMAGE_EXTENSIONS

HELD_OUT_EVERY, HELD_OUT_INDEX = 9, 4  # sr3_quality.py's split
SIDE = 128
COLOUR = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")
GREY = ("camera", "coins", "moon", "clock", "brick", "grass", "gravel")


def quarter_crops(img: Image.Image, side: int = SIDE):
    """Four side x side crops centred at (1/4 | 3/4) of the width and height, clamped inside the image."""
    w, h = img.size
    for k, (fx, fy) in enumerate([(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)]):
        left = max(0, min(w - side, int(w * fx) - side // 2))
        top = max(0, min(h - side, int(h * fy) - side // 2))
        yield k, img.crop((left, top, left + side, top + side))


def main() -> None:
    """Write the crops into --out."""
    from skimage import data

    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", required=True, help="the photo folder sr3_quality.py splits (../shared/data/photos)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in Path(args.photos).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    held = [p for i, p in enumerate(files) if i % HELD_OUT_EVERY == HELD_OUT_INDEX]
    sources = [(f"heldout-offcentre-{p.stem}", Image.open(p).convert("RGB")) for p in held]
    sources += [(f"skimage-{n}", Image.fromarray(getattr(data, n)()).convert("RGB")) for n in COLOUR]
    sources += [(f"skimage-grey-{n}", Image.fromarray(getattr(data, n)()).convert("RGB")) for n in GREY]
    n = 0
    for name, img in sources:
        for k, crop in quarter_crops(img):
            crop.save(out / f"{name}-q{k}.png")
            n += 1
    print(f"wrote {n} crops to {out}")


if __name__ == "__main__":
    main()
