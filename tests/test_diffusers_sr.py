"""`diffusers:` methods on tiny pipelines built from configs (random weights), saved and loaded through the method."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from baselines.options import DiffusersMethodOptions
from evalsuite.methods import MethodContext, build_method, method_scales
from evalsuite.options import build_options

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def tiny_tokenizer(folder: Path) -> transformers.CLIPTokenizer:
    """A CLIP BPE tokenizer over a tiny vocabulary (letters, a few merges) written by the test."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(_LETTERS) + [c + "</w>" for c in _LETTERS]
    merges = ["p h", "ph o", "o t", "ot o</w>"]
    tokens += ["ph", "pho", "ot", "oto</w>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def tiny_sd_upscaler(folder: Path, vae_blocks: int = 3) -> Path:
    """A StableDiffusionUpscalePipeline with random weights: CLIP text encoder, latent U-Net, VAE decoding 4x."""
    torch.manual_seed(0)
    tok = tiny_tokenizer(folder / "_tok")
    text = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=1,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            projection_dim=16,
        )
    )
    unet = diffusers.UNet2DConditionModel(
        sample_size=8,
        in_channels=7,  # 4 latent channels + the noised LR (3)
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        num_class_embeds=100,  # the LR noise level is the class label
    )
    vae = diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=[8] * vae_blocks,
        down_block_types=["DownEncoderBlock2D"] * vae_blocks,
        up_block_types=["UpDecoderBlock2D"] * vae_blocks,
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
        scaling_factor=0.08333,
    )
    pipe = diffusers.StableDiffusionUpscalePipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tok,
        unet=unet,
        low_res_scheduler=diffusers.DDPMScheduler(),
        scheduler=diffusers.DDPMScheduler(),  # a step that draws noise: per-image generators must reach it
        max_noise_level=99,
    )
    pipe.save_pretrained(folder)
    return folder


def tiny_ldm_sr(folder: Path) -> Path:
    """An LDMSuperResolutionPipeline with random weights: a pixel-space U-Net on VQ latents, VQ decoding 4x."""
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=6,  # 3 latent channels + the LR (3)
        out_channels=3,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    )
    vq = diffusers.VQModel(
        in_channels=3,
        out_channels=3,
        block_out_channels=[8, 8, 8],
        down_block_types=["DownEncoderBlock2D"] * 3,
        up_block_types=["UpDecoderBlock2D"] * 3,
        latent_channels=3,
        norm_num_groups=4,
        layers_per_block=1,
        num_vq_embeddings=16,
    )
    diffusers.LDMSuperResolutionPipeline(vqvae=vq, unet=unet, scheduler=diffusers.DDIMScheduler()).save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pipelines")
    ldm = tiny_ldm_sr(root / "ldm")
    # The same LDM-SR with a scheduler whose step draws noise (the pipeline hands it no generator).
    ddpm = shutil.copytree(ldm, root / "ldm-ddpm")
    diffusers.DDPMScheduler().save_pretrained(ddpm / "scheduler")
    index = json.loads((ddpm / "model_index.json").read_text())
    (ddpm / "model_index.json").write_text(json.dumps({**index, "scheduler": ["diffusers", "DDPMScheduler"]}))
    return {"sd": tiny_sd_upscaler(root / "sd"), "ldm": ldm, "ldm-ddpm": ddpm}


@pytest.mark.parametrize("which", ["sd", "ldm", "ldm-ddpm"])
def test_pipeline_is_deterministic_per_image_and_conditioned_on_the_lr(pipelines, which):
    opts = {"steps": 3, "prompt": "photo", "guidance_scale": 2.0} if which == "sd" else {"steps": 3}
    m = build_method(f"diffusers:{pipelines[which]}", MethodContext(4, seed=3, options=opts))
    assert m.scale == 4 and m.stochastic and m.info["pipeline"].endswith("Pipeline")
    assert m.info["scheduler"] == {"sd": "DDPMScheduler", "ldm": "DDIMScheduler", "ldm-ddpm": "DDPMScheduler"}[which]
    torch.manual_seed(1)
    x = torch.rand(2, 3, 8, 12)  # 12 px wide: not a multiple of the U-Net's 2, padded and cropped back (32 -> 48)
    ids = ["a", "b"]
    out = m(x, ids)
    assert out.shape == (2, 3, 32, 48) and 0 <= float(out.min()) and float(out.max()) <= 1
    # Same output twice, and batch size 1 vs 2 identical: image k's noise comes from its own generator.
    torch.testing.assert_close(m(x, ids), out, atol=1e-5, rtol=0)
    one_by_one = torch.cat([m(x[k : k + 1], ids[k : k + 1]) for k in range(2)])
    torch.testing.assert_close(one_by_one, out, atol=1e-5, rtol=0)
    # Seeds differ per image: the same LR under two ids gives two different samples.
    same = m(x[:1].expand(2, -1, -1, -1), ["a", "c"])
    torch.testing.assert_close(same[:1], out[:1], atol=1e-5, rtol=0)
    assert (same[0] - same[1]).abs().mean() > 1e-3
    # The LR reaches the output: another LR under the same id (same noise) gives another output.
    moved = m(torch.rand(1, 3, 8, 12), ["a"])
    assert (moved[0] - out[0]).abs().mean() > 1e-3
    # Another run seed, other samples.
    other = build_method(f"diffusers:{pipelines[which]}", MethodContext(4, seed=4, options=opts))(x, ids)
    assert (other - out).abs().mean() > 1e-3


def test_large_images_run_in_tiles_with_their_own_seeds(pipelines):
    m = build_method(f"diffusers:{pipelines['ldm']}", MethodContext(4, options={"steps": 2, "tile": 8}))
    x = torch.rand(1, 3, 10, 20)
    out = m(x, ["big"])
    assert out.shape == (1, 3, 40, 80) and torch.isfinite(out).all()
    pair = m(torch.cat([x, torch.rand(1, 3, 10, 20)]), ["big", "other"])
    torch.testing.assert_close(pair[:1], out, atol=1e-5, rtol=0)


def test_scale_options_and_pipeline_class_are_checked(pipelines, tmp_path):
    assert method_scales(f"diffusers:{pipelines['sd']}") == (4,) == method_scales(f"diffusers:{pipelines['ldm']}")
    with pytest.raises(ValueError, match="upscales 4x .* task needs 2x"):
        build_method(f"diffusers:{pipelines['sd']}", MethodContext(2))
    with pytest.raises(ValueError, match="noise_level apply to StableDiffusionUpscalePipeline only"):
        build_method(f"diffusers:{pipelines['ldm']}", MethodContext(4, options={"noise_level": 5}))
    with pytest.raises(ValueError, match="noise_level=100 must be within 0..99"):
        build_method(f"diffusers:{pipelines['sd']}", MethodContext(4, options={"noise_level": 100}))
    with pytest.raises(ValueError, match="unknown method diffusers:.* option 'step'"):
        build_options(DiffusersMethodOptions, {"step": 3}, "method diffusers:x")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(ValueError, match="supported: StableDiffusionUpscalePipeline, LDMSuperResolutionPipeline"):
        build_method(f"diffusers:{tmp_path / 'other'}", MethodContext(4))
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        build_method(f"diffusers:{tmp_path}", MethodContext(4))


def test_without_diffusers_the_method_names_the_extra(pipelines, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'evalsuite\[diffusers\]'"):
        build_method(f"diffusers:{pipelines['ldm']}", MethodContext(4))


def test_a_hub_pipeline_from_the_cache_runs_in_the_harness_with_samples(pipelines, tmp_path, monkeypatch):
    """`diffusers:hf:ORG/REPO` and `diffusers:ORG/REPO` from a laid-out Hub cache, offline; --samples 2."""
    from test_hub import C1
    from test_train import make_photos

    from evalsuite.hub import HubError
    from evalsuite.runner import run
    from evalsuite.spec import BenchmarkSpec

    cache = tmp_path / "hf"
    shutil.copytree(pipelines["ldm"], cache / "models--org--ldm" / "snapshots" / C1)
    (cache / "models--org--ldm" / "refs").mkdir()
    (cache / "models--org--ldm" / "refs" / "main").write_text(C1)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = build_method("diffusers:org/ldm", MethodContext(4, options={"steps": 2}))
    assert m.info["hf"]["commit"] == C1 and "unet/config.json" in m.info["hf"]["files_sha256"]
    with pytest.raises(ValueError, match="upscales 4x .* task needs 2x"):  # a pipeline's own error, not a hint
        build_method("diffusers:hf:org/ldm", MethodContext(2))
    with pytest.raises(HubError, match="`hf download org/none --revision v2`"):
        build_method("diffusers:org/none@v2", MethodContext(4))

    spec = BenchmarkSpec().replace(
        data=str(make_photos(tmp_path / "photos", n=1, size=(32, 32))),
        task=None,
        scale=4,
        methods=("diffusers:hf:org/ldm",),
        metrics=("psnr", "consistency"),
        samples=2,
        out=str(tmp_path / "run"),
        report=False,
        method_options={"steps": 2},
        device="cpu",
    )
    run(spec)
    info = json.loads((tmp_path / "run" / "manifest.json").read_text())["methods"]["diffusers-ldm"]
    assert info["pipeline"] == "LDMSuperResolutionPipeline" and info["hf"]["commit"] == C1
    # Sample 0 (the table's) and sample 1 (seed 'astronaut#s1') are two different draws.
    outs = tmp_path / "run" / "outputs" / "diffusers-ldm"
    paths = (outs / "astronaut.png", outs / "samples" / "s1" / "astronaut.png")
    s0, s1 = (np.asarray(Image.open(p), dtype=np.float32) for p in paths)
    assert s0.shape == s1.shape == (32, 32, 3) and np.abs(s0 - s1).mean() > 1
