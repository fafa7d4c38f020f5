"""Build tests/data/janspiry-sr3/trained_gen.pth: a tiny SR3 trained briefly, saved in the public code's format.

The import self-check (baselines/sr3/import_check.py) needs a checkpoint that predicts ε well with its true
norm_groups; the parity fixture's weights are random. This trains a tiny U-Net in that code's layout (width
16, mults 1,2, one res block, norm_groups 8, √γ embedding, ε-prediction, L1) on 32 px crops of
scikit-image's photos at 4x for a few hundred steps on the CPU (about a minute), then writes its state dict
under `denoise_fn.*` with the schedule buffer `betas`, as that code's `I…_gen.pth`, and its config JSON.
Run: `PYTHONPATH=. python scripts/make_janspiry_trained_fixture.py [--steps 600]`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from baselines.sr3.janspiry import PREFIX, janspiry_key, janspiry_unet
from baselines.sr3.model import SR3Config, SR3Denoiser
from baselines.sr3.schedule import linear
from evalsuite.degrade import degrade, to_tensor, upsample

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "janspiry-sr3"
PHOTOS = ("astronaut", "coffee", "rocket")  # the self-check also uses chelsea, never seen here


def crops(n: int, side: int, g: torch.Generator) -> torch.Tensor:
    """n random side x side crops (random photo, position, flip) in [0, 1], (n,3,side,side)."""
    from PIL import Image
    from skimage import data

    photos = [to_tensor(Image.fromarray(getattr(data, p)()).convert("RGB").reduce(2)) for p in PHOTOS]
    out = []
    for _ in range(n):
        x = photos[int(torch.randint(len(photos), (1,), generator=g))]
        i = int(torch.randint(x.shape[1] - side, (1,), generator=g))
        j = int(torch.randint(x.shape[2] - side, (1,), generator=g))
        c = x[:, i : i + side, j : j + side]
        out.append(c.flip(-1) if bool(torch.rand(1, generator=g) < 0.5) else c)
    return torch.stack(out)


def main() -> None:
    """Train and write trained_gen.pth + trained_config.json."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    args = ap.parse_args()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    unet = janspiry_unet(16, (1, 2), 1, (), norm_groups=8, image_size=32)
    sched = linear(2000, 1e-6, 1e-2)
    cfg = SR3Config(unet=unet, scale=4, parameterization="eps", embedding="sqrt_gamma", loss="l1",
                    train_schedule=sched.to_spec())
    model = SR3Denoiser(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gam = sched.gamma().float()
    for step in range(args.steps):
        hr = crops(32, 32, g) * 2 - 1
        x_cond = upsample(degrade((hr + 1) / 2, 4), 4) * 2 - 1
        # γ per example from the training schedule's range that matters here (as that code: t uniform).
        gamma = gam[torch.randint(200, 2000, (hr.shape[0],), generator=g)].double()
        eps = torch.randn(hr.shape, generator=g)
        y_t = gamma.sqrt().view(-1, 1, 1, 1).float() * hr + (1 - gamma).sqrt().view(-1, 1, 1, 1).float() * eps
        loss = (model.eps(x_cond, y_t, gamma) - eps).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            print(f"step {step} L1 {float(loss):.4f}")
    state = {PREFIX + janspiry_key(k[len("net.") :]): v.detach().clone() for k, v in model.state_dict().items()
             if k.startswith("net.")}
    state["betas"] = sched.beta().clone()
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(state, OUT / "trained_gen.pth")
    config = {
        "name": "tiny-trained-fixture",
        "model": {
            "unet": {"in_channel": 6, "out_channel": 3, "inner_channel": 16, "channel_multiplier": [1, 2],
                     "attn_res": [], "res_blocks": 1, "dropout": 0, "norm_groups": 8},
            "beta_schedule": {
                "train": {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 1e-2},
                "val": {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 1e-2},
            },
            "diffusion": {"image_size": 32, "channels": 3, "conditional": True},
        },
        "datasets": {"val": {"l_resolution": 8, "r_resolution": 32}},
    }
    (OUT / "trained_config.json").write_text(json.dumps(config, indent=1) + "\n")
    print(f"wrote {OUT / 'trained_gen.pth'}")


if __name__ == "__main__":
    main()
