"""Parity with the public SR3 re-implementation (Janspiry): import, ε, the ancestral trajectory, key maps, errors.

The fixture (tests/data/janspiry-sr3, see its README) was computed by that implementation's own code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from baselines.checkpoint import load_checkpoint
from baselines.sr3 import load_denoiser
from baselines.sr3.janspiry import (
    PREFIX,
    JanspiryFormatError,
    convert,
    infer_unet,
    layout,
    read_commented_json,
    unet_from_config,
)
from baselines.sr3.method import build_sr3
from baselines.sr3.samplers import ancestral
from baselines.sr3.schedule import linear
from baselines.unet import UNet, count_parameters
from evalsuite.cli import main
from evalsuite.methods import MethodContext

DATA = Path(__file__).parent / "data" / "janspiry-sr3"
GEN, CONFIG = DATA / "small_gen.pth", DATA / "small_config.json"
MANIFEST = json.loads((DATA / "manifest.json").read_text())


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(str(DATA / "small_io.safetensors"))


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("imp") / "small.safetensors"
    # The fixture's config has no `datasets` section (the scale's source); its LR is 8 px for 32 px.
    assert main(["sr3", "import", str(GEN), "--config", str(CONFIG), "--scale", "4", "-o", str(out)]) == 0
    return out


def test_imported_checkpoint_gives_the_public_codes_eps(imported, io):
    ck = load_checkpoint(imported, kind="sr3")
    assert ck.config["parameterization"] == "eps" and ck.config["embedding"] == "sqrt_gamma"
    assert ck.config["unet"]["groups"] == 8 and ck.config["unet"]["attn_res"] == [8] and ck.config["scale"] == 4
    # Sampling as that code does: its val schedule, every step, posterior variance, ŷ0 clipped.
    assert ck.extra["sampling"]["schedule"] == linear(2000, 1e-6, 1e-2).to_spec()
    assert ck.extra["sampling"]["variance"] == "posterior" and ck.extra["sampling"]["clip_x0"] is True
    gamma = io["sqrt_gamma"][:, 0].double() ** 2  # (B,) γ from the (B, 1) √γ it was fed
    for den in (load_denoiser(imported), load_denoiser(GEN, CONFIG)):  # the written file and on the fly
        with torch.no_grad():
            eps = den.eps(io["x_cond"], io["y_t"], gamma)
        assert float((eps - io["eps"]).abs().max()) < 1e-5
    # Guard: the embedding convention matters (γ instead of √γ fed to the same weights misses by far).
    with torch.no_grad():
        wrong = den.eps(io["x_cond"], io["y_t"], gamma**2)
    assert float((wrong - io["eps"]).abs().max()) > 1e-2


def test_ancestral_sampler_fed_the_same_noises_reproduces_every_state(imported, io):
    den = load_denoiser(imported)
    x_cond = io["x_cond"][:1]
    z = iter(io["traj_noise"][1:])  # z[0] is y_T; z[k+1] is drawn at step k
    seen: list[torch.Tensor] = []

    def denoise(y_t: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        return den(x_cond, y_t, gamma).clamp(-1, 1)

    with torch.no_grad():
        out = ancestral(
            denoise,
            io["traj_noise"][0],
            linear(50, 1e-4, 0.05).sampling_gammas(),  # the trajectory's schedule (manifest)
            noise=lambda: next(z),
            callback=lambda d: seen.append(d["y"]),
            variance="posterior",
        )
    states = torch.stack([*seen[1:], out])  # the state after each of the 50 steps
    assert states.shape == io["traj_states"].shape
    err = (states - io["traj_states"]).abs().amax(dim=(1, 2, 3, 4))
    assert float(err.max()) < 1e-4, err
    assert float((out - io["traj_out"]).abs().max()) < 1e-4
    # Guard: Algorithm 2's β_t noise (not the posterior's) leaves the trajectory.
    z = iter(io["traj_noise"][1:])
    with torch.no_grad():
        other = ancestral(denoise, io["traj_noise"][0], linear(50, 1e-4, 0.05).sampling_gammas(), lambda: next(z))
    assert float((other - io["traj_out"]).abs().max()) > 1e-2


@pytest.mark.parametrize("name", list(MANIFEST["published"]))
def test_published_configurations_map_completely(name):
    pub = MANIFEST["published"][name]
    theirs = {k.removeprefix(PREFIX): tuple(v) for k, v in pub["keys"].items()}
    u = pub["unet"]
    unet = unet_from_config(
        {
            "model": {
                "unet": {**u, "channel_multiplier": u["channel_mults"]},
                "diffusion": {"image_size": pub["image_size"]},
            }
        }
    )
    ours = layout(unet)
    # Every key of theirs has exactly one counterpart of the same shape, and none is left over.
    assert set(ours) == set(theirs)
    assert {k: shape for k, (_, shape) in ours.items()} == theirs
    assert len({our for our, _ in ours.values()}) == len(theirs)
    with torch.device("meta"):
        n = count_parameters(UNet(unet))
    assert n == pub["n_params"] == sum(torch.Size(s).numel() for s in theirs.values())
    # The architecture read back from the key shapes alone is the configured one.
    meta = {k: torch.empty(s, device="meta") for k, s in theirs.items()}
    assert infer_unet(meta, Path(name), u["norm_groups"], pub["image_size"], u["dropout"]) == unet


def test_published_parameter_counts():
    counts = {pub["n_params"] for pub in MANIFEST["published"].values()}
    assert counts == {97_807_491, 155_334_339}


def test_sr3_method_evaluates_the_imported_file_and_the_pth_on_the_fly(imported):
    x = torch.rand(1, 3, 8, 8)
    opts = {"steps": 3, "tile": 0}
    a = build_sr3(str(imported), MethodContext(4, seed=1, options=opts))
    # On the fly, the config silent about the scale: the option `scale`, else the task's (the weights cannot say).
    b = build_sr3(str(GEN), MethodContext(8, seed=1, options={**opts, "config": str(CONFIG), "scale": 8}))
    assert a.variance == "posterior" and a.info["embedding"] == "sqrt_gamma" and b.scale == 8
    assert "scale 8 from given" in b.info["unconfirmed"] and "not run" in b.info["self_check"]
    c = build_sr3(str(GEN), MethodContext(4, seed=1, options={**opts, "config": str(CONFIG)}))
    assert c.scale == 4 and "scale 4 from the task's scale (the config has no datasets section" in c.info["unconfirmed"]
    out = a(x, ["img"])
    assert out.shape == (1, 3, 32, 32)
    # On the fly: the same weights and sampling settings (8x as asked).
    assert b.schedule == a.schedule and b.variance == a.variance and b.clip_x0 == a.clip_x0
    for k, v in a.model.state_dict().items():
        torch.testing.assert_close(b.model.state_dict()[k], v, rtol=0, atol=0)
    assert b(x, ["img"]).shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="option `config`"):
        build_sr3(str(imported), MethodContext(8, options={"config": str(CONFIG)}))
    with pytest.raises(ValueError, match="option `scale`"):
        build_sr3(str(imported), MethodContext(4, options={"scale": 4}))


def test_not_that_format_gets_one_clear_error(tmp_path):
    opt = tmp_path / "I10_E1_opt.pth"
    torch.save({"epoch": 1, "iter": 10, "optimizer": {}}, opt)
    with pytest.raises(JanspiryFormatError, match=r"no `denoise_fn\.\*` keys \(found: epoch, iter, optimizer\)"):
        convert(opt)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(JanspiryFormatError, match="not a PyTorch checkpoint of the public SR3 code"):
        convert(text)
    assert main(["sr3", "import", str(opt), "-o", str(tmp_path / "x.safetensors")]) == 2


def _config_with(tmp_path: Path, **unet: object) -> Path:
    cfg = read_commented_json(CONFIG)
    cfg["model"]["unet"].update(unet)
    p = tmp_path / "changed.json"
    p.write_text(json.dumps(cfg))
    return p


def test_a_config_that_does_not_match_the_weights_names_the_key_and_shapes(tmp_path):
    with pytest.raises(
        JanspiryFormatError,
        match=r"key denoise_fn\.noise_level_mlp\.1\.weight has shape \(64, 16\) in the checkpoint but \(128, 32\)",
    ):
        convert(GEN, _config_with(tmp_path, inner_channel=32))
    # Attention where the weights have none (missing keys), or none where they have it (keys left over).
    with pytest.raises(
        JanspiryFormatError, match=r"key denoise_fn\.downs\.3\.attn\.norm\.weight \(shape \(32,\)\) is miss"
    ):
        convert(GEN, _config_with(tmp_path, attn_res=[8, 16]))
    with pytest.raises(
        JanspiryFormatError, match=r"key denoise_fn\.downs\.5\.attn\.norm\.weight \(shape \(64,\)\) has no pl"
    ):
        convert(GEN, _config_with(tmp_path, attn_res=[]))
    # The schedule saved with the weights must be the config's.
    cfg = read_commented_json(CONFIG)
    cfg["model"]["beta_schedule"] = {k: {**v, "n_timestep": 1000} for k, v in cfg["model"]["beta_schedule"].items()}
    (tmp_path / "sched.json").write_text(json.dumps(cfg))
    with pytest.raises(JanspiryFormatError, match=r"key betas has shape \(2000,\)"):
        convert(GEN, tmp_path / "sched.json")
    # Without a config norm_groups is that code's default 32, which this network (48 channels) cannot use.
    with pytest.raises(JanspiryFormatError, match="norm_groups 32 .*pass the config"):
        convert(GEN)


def test_config_comments_are_dropped_outside_strings_only(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"url": "http://x//y", // a comment\n "model": {"unet": {}} // another\n}\n')
    assert read_commented_json(p) == {"url": "http://x//y", "model": {"unet": {}}}
    assert read_commented_json(CONFIG)["model"]["unet"]["norm_groups"] == 8
