"""The base generator: `train ddpm` on whole images at low resolution, class-conditional with --labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from baselines.checkpoint import load_checkpoint
from baselines.cli import train_config
from baselines.data import CropDataset, read_labels
from baselines.ddpm import load_ddpm
from baselines.train import load_recipe, make_batch, train
from baselines.train_config import TrainConfig
from evalsuite import cli

FACES = Path(__file__).parent / "data" / "faces64"


def _classes(tmp: Path) -> Path:
    """The face crops in two class folders (by person)."""
    for p in sorted(FACES.glob("*.png")):
        person = p.stem.rsplit("-", 1)[0]
        (tmp / person).mkdir(parents=True, exist_ok=True)
        shutil.copy(p, tmp / person / p.name)
    return tmp


def test_class_conditional_base_trains_on_labelled_crops_and_samples_per_class(tmp_path):
    data = _classes(tmp_path / "data")
    labels = read_labels(data, "folders")
    classes = sorted(set(labels.values()))
    assert len(classes) >= 3
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), scale=4, crop=64, batch_size=4, steps=3, warmup=1,
                      save_every=10**6, workers=0, progress=False, labels="folders")
    recipe = load_recipe("ddpm", cfg, {"preset": "tiny"})
    assert recipe.config.classes == tuple(classes) and recipe.config.size == 16
    # The loop's batches carry each crop's class; the network receives exactly those.
    ds = CropDataset(data, 64, labels=labels)
    items = [ds[i] for i in range(4)]
    batch = make_batch([torch.stack([c for c, _ in items]), torch.tensor([k for _, k in items])], 4, False,
                       torch.device("cpu"))
    expected = [classes.index(labels[ds.paths[ds.image_index(i)]]) for i in range(4)]
    assert batch.labels.tolist() == expected and batch.lr.shape == (4, 3, 16, 16)
    seen = []
    net = recipe.build_modules()["net"]
    orig = net.net.forward
    net.net.forward = lambda x, c, labels=None, aug=None: (seen.append(labels), orig(x, c, labels=labels))[1]
    recipe.train_step({"net": net}, batch, 0)
    assert seen[0].tolist() == expected
    # Trained through the loop: the checkpoint names its classes; samples depend on the label.
    res = train(recipe, cfg, log=lambda s: None)
    ck = load_checkpoint(res.checkpoint, kind="ddpm")
    assert ck.config["classes"] == classes and "net.class_emb.weight" in ck.state_dict
    base = load_ddpm(res.checkpoint, steps=3)
    a, b = base.sample(["x", "x"], [0, 1])
    assert a.shape == (3, 16, 16) and not torch.allclose(a, b)
    with pytest.raises(ValueError, match="pass labels"):
        base.sample(["x"])


def test_train_ddpm_flags(tmp_path):
    args = cli.build_parser().parse_args(["train", "ddpm", "--data", "D", "--out", "O", "--crop", "64", "--size", "16"])
    cfg = train_config(args)
    assert (cfg.crop, cfg.scale) == (64, 4)
    bad = cli.build_parser().parse_args(["train", "ddpm", "--data", "D", "--out", "O", "--crop", "64", "--size", "24"])
    with pytest.raises(ValueError, match="multiple of --size"):
        train_config(bad)
    sr3 = cli.build_parser().parse_args(["train", "sr3", "--data", "D", "--out", "O", "--scale", "4", "--size", "16"])
    with pytest.raises(ValueError, match="--size N is the generated side"):
        train_config(sr3)
    cfg = TrainConfig(data=str(FACES), out=str(tmp_path / "r"), scale=4, crop=64, steps=1, workers=0, progress=False,
                      labels="folders")
    with pytest.raises(ValueError, match="takes no class labels"):
        train(load_recipe("sr3", cfg, {"preset": "tiny"}), cfg, log=lambda s: None)


def test_cascade_labels_choose_each_sample_class(tmp_path):
    from baselines.cascade import CascadeSpec, run_cascade

    data = _classes(tmp_path / "data")
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), scale=4, crop=64, batch_size=4, steps=2, warmup=1,
                      save_every=10**6, workers=0, progress=False, labels="folders")
    ckpt = train(load_recipe("ddpm", cfg, {"preset": "tiny"}), cfg, log=lambda s: None).checkpoint
    classes = load_ddpm(ckpt).model.cfg.classes
    table = tmp_path / "labels.csv"
    table.write_text(f"000000,{classes[1]}\n000001,{classes[1]}\n")

    def run(out: str, labels: str | None) -> list[np.ndarray]:
        spec = CascadeSpec(base=f"ddpm:{ckpt}", stages=(), out=str(tmp_path / out), n=2, steps=3, labels=labels,
                           metrics=(), report=False)
        run_cascade(spec, log=lambda s: None)
        return [np.asarray(Image.open(tmp_path / out / "levels" / "base" / f"00000{k}.png")) for k in range(2)]

    default = run("a", None)  # classes in turn: sample 0 is class 0, sample 1 class 1
    chosen = run("b", str(table))  # both class 1
    assert np.array_equal(default[1], chosen[1]) and not np.array_equal(default[0], chosen[0])
    with pytest.raises(ValueError, match="unknown or missing classes"):
        run("c", "no-such-class")


@pytest.mark.slow
def test_a_few_hundred_steps_learn_the_faces_colours_and_smoothness(tmp_path):
    # 200 steps (about 20 s on one CPU core): the samples' channel means are the faces' and their
    # neighbour differences far below noise's (measured: 0.107 vs 0.086 for the faces and 0.33 for noise).
    from evalsuite.degrade import degrade, to_tensor

    cfg = TrainConfig(data=str(FACES), out=str(tmp_path / "run"), scale=4, crop=64, batch_size=8, steps=200,
                      warmup=10, lr=2e-3, save_every=10**6, workers=0, progress=False, ema_decay=0.99)
    ckpt = train(load_recipe("ddpm", cfg, {"preset": "tiny"}), cfg, log=lambda s: None).checkpoint
    x = load_ddpm(ckpt, steps=50).sample([str(i) for i in range(8)])
    faces = degrade(torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in sorted(FACES.glob("*.png"))]), 4)
    assert (x.mean(dim=(0, 2, 3)) - faces.mean(dim=(0, 2, 3))).abs().max() < 0.05

    def hf(t: torch.Tensor) -> float:
        return float((t[..., 1:] - t[..., :-1]).abs().mean())

    assert hf(x) < 0.5 * hf(torch.rand_like(x))
