"""Import checkpoints of the public SR3 re-implementation (Janspiry/Image-Super-Resolution-via-Iterative-Refinement).

Its `I{iter}_E{epoch}_gen.pth` is a `torch.save` of its diffusion module's state dict: the U-Net under
`denoise_fn.*` and the schedule buffers (`betas`, `alphas_cumprod`, ...). Its conventions, reproduced by an
SR3 checkpoint of this project: ε-prediction; the noise level fed to the U-Net is √γ, embedded by sin/cos
without scaling (`embedding="sqrt_gamma"`); the U-Net is `unet.py` with the DDPM layout (conv resampling,
one-head attention without qkv bias, additive embedding projected without an activation); conditioning on
the bicubic-upsampled LR; ancestral sampling with the posterior variance and ŷ0 clipped to [-1, 1].

The architecture is read from the key shapes; `norm_groups` (not stored in the weights), the image size
that places attention, the schedules and the scale come from its config file when given, else from that
code's defaults. Mismatches are reported by key and shape (`JanspiryFormatError`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from baselines.checkpoint import Checkpoint, config_to_dict, save_checkpoint
from baselines.sr3.model import SR3Config
from baselines.sr3.schedule import Schedule, cosine, linear
from baselines.unet import JANSPIRY_LAYOUT, UNet, UNetConfig

PREFIX = "denoise_fn."
# That code's defaults where its config is silent (its UNet's norm_groups and image_size; the schedule and
# scale of its 16->128 face configuration).
DEFAULT_NORM_GROUPS = 32
DEFAULT_IMAGE_SIZE = 128
DEFAULT_SCALE = 8
DEFAULT_SCHEDULE = {"schedule": "linear", "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 1e-2}

# Our U-Net's module names -> theirs, per block kind (a dotted prefix is replaced as a whole).
_RESBLOCK = {
    "norm1": "block1.block.0",
    "conv1": "block1.block.3",
    "emb": "noise_func.noise_func.0",
    "norm2": "block2.block.0",
    "conv2": "block2.block.3",
    "skip": "res_conv",
}
_ATTENTION = {"norm": "norm", "qkv": "qkv", "proj": "out"}


class JanspiryFormatError(ValueError):
    """A file is not a checkpoint of that implementation, or its config does not match its weights."""


def read_commented_json(path: str | Path) -> dict[str, Any]:
    """A JSON file that may hold `//` line comments (that code's config format), comments outside strings dropped."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    # Drop `//` comments outside string literals: a string is "..." with backslash escapes.
    token = re.compile(r'"(?:\\.|[^"\\])*"|//[^\n]*')
    stripped = token.sub(lambda m: m.group(0) if m.group(0).startswith('"') else "", text)
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise JanspiryFormatError(f"{path} is not a JSON config (with // comments): {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise JanspiryFormatError(f"{path} has no `model` section: pass the config JSON that trained the checkpoint")
    return data


def janspiry_key(key: str) -> str:
    """A key of our U-Net's state dict (DDPM layout) -> the public code's key (without `denoise_fn.`)."""
    parts = key.split(".")
    head, rest = parts[0], parts[1:]
    if head == "emb_mlp":
        return ".".join([{"0": "noise_level_mlp.1", "2": "noise_level_mlp.3"}[rest[0]], *rest[1:]])
    if head == "stem":
        return ".".join(["downs.0", *rest])
    if head == "out":
        return ".".join([{"0": "final_conv.block.0", "2": "final_conv.block.3"}[rest[0]], *rest[1:]])
    if head in ("mid1", "mid2"):
        return ".".join([f"mid.{int(head[-1]) - 1}.res_block", _inner(rest, _RESBLOCK)])
    if head == "mid_attn":
        return ".".join(["mid.0.attn", _inner(rest, _ATTENTION)])
    if head in ("down", "up"):
        # Their `downs` list starts with the stem conv, so encoder index j is their j + 1.
        idx = int(rest[0]) + (1 if head == "down" else 0)
        theirs = f"{head}s.{idx}"
        if rest[1] == "block":
            return ".".join([theirs, "res_block", _inner(rest[2:], _RESBLOCK)])
        if rest[1] == "attn":
            return ".".join([theirs, "attn", _inner(rest[2:], _ATTENTION)])
        # Resampling convs: ours a bare conv (down) or (Upsample, conv) (up); theirs `.conv`.
        return ".".join([theirs, "conv", rest[-1]])
    raise KeyError(f"no counterpart in the public code for U-Net key {key!r}")


def _inner(rest: list[str], names: dict[str, str]) -> str:
    return ".".join([names[rest[0]], *rest[1:]])


def read_gen(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Load an `I…_gen.pth` -> (U-Net weights without the `denoise_fn.` prefix, schedule buffers)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler errors all mean "not that format"
        raise JanspiryFormatError(
            f"{path} is not a PyTorch checkpoint of the public SR3 code ({type(exc).__name__}: {exc}); "
            "pass its I<iter>_E<epoch>_gen.pth file"
        ) from exc
    if not isinstance(sd, dict) or not any(isinstance(k, str) and k.startswith(PREFIX) for k in sd):
        found = ", ".join(sorted(map(str, sd))[:6]) if isinstance(sd, dict) else type(sd).__name__
        raise JanspiryFormatError(
            f"{path} is not a generator checkpoint of the public SR3 code: no `{PREFIX}*` keys (found: {found}); "
            "pass the I<iter>_E<epoch>_gen.pth file, not the _opt.pth one"
        )
    weights = {k[len(PREFIX) :]: v for k, v in sd.items() if k.startswith(PREFIX)}
    buffers = {k: v for k, v in sd.items() if not k.startswith(PREFIX)}
    return weights, buffers


def _need(weights: dict[str, torch.Tensor], key: str, path: Path) -> torch.Tensor:
    if key not in weights:
        raise JanspiryFormatError(f"{path} lacks the key {PREFIX}{key}: not a checkpoint of the public SR3 U-Net")
    return weights[key]


def infer_unet(
    weights: dict[str, torch.Tensor],
    path: Path,
    norm_groups: int = DEFAULT_NORM_GROUPS,
    image_size: int = DEFAULT_IMAGE_SIZE,
    dropout: float = 0.0,
) -> UNetConfig:
    """The U-Net architecture read from the key shapes (norm_groups, image_size, dropout are not in them)."""
    width = int(_need(weights, "noise_level_mlp.1.weight", path).shape[1])
    in_ch = int(_need(weights, "downs.0.weight", path).shape[1])
    out_ch = int(_need(weights, "final_conv.block.3.weight", path).shape[0])
    # Walk the encoder: blocks (channels, attention?) grouped into levels by the down-sampling convs.
    levels: list[list[tuple[int, bool]]] = [[]]
    i = 1
    while True:
        if f"downs.{i}.conv.weight" in weights:
            levels.append([])
        elif f"downs.{i}.res_block.block1.block.3.weight" in weights:
            ch = int(weights[f"downs.{i}.res_block.block1.block.3.weight"].shape[0])
            levels[-1].append((ch, f"downs.{i}.attn.qkv.weight" in weights))
        else:
            break
        i += 1
    res_blocks = {len(lvl) for lvl in levels}
    if len(res_blocks) != 1 or 0 in res_blocks:
        raise JanspiryFormatError(
            f"{path}: encoder levels hold {[len(lvl) for lvl in levels]} residual blocks; the public U-Net has "
            "the same number at every level"
        )
    mults = tuple(lvl[0][0] // width for lvl in levels)
    attn_res = tuple(image_size >> k for k, lvl in enumerate(levels) if lvl[0][1])
    return janspiry_unet(width, mults, res_blocks.pop(), attn_res, norm_groups, image_size, dropout, in_ch, out_ch)


def janspiry_unet(
    width: int,
    mults: tuple[int, ...],
    res_blocks: int,
    attn_res: tuple[int, ...],
    norm_groups: int,
    image_size: int,
    dropout: float = 0.0,
    in_channels: int = 6,
    out_channels: int = 3,
) -> UNetConfig:
    """Our U-Net in the public code's layout with its hyper-parameters."""
    return UNetConfig(
        in_channels=in_channels,
        out_channels=out_channels,
        width=width,
        mults=tuple(mults),
        res_blocks=res_blocks,
        attn_res=tuple(attn_res),
        mid_attn=True,
        dropout=float(dropout),
        image_size=image_size,
        groups=norm_groups,
        **JANSPIRY_LAYOUT,
    )


def unet_from_config(cfg: dict[str, Any]) -> UNetConfig:
    """The U-Net a config file describes (`model.unet`, `model.diffusion.image_size`)."""
    u = cfg["model"].get("unet") or {}
    mults = u.get("channel_multiplier", u.get("channel_mults"))
    try:
        return janspiry_unet(
            int(u["inner_channel"]),
            tuple(int(m) for m in mults),
            int(u["res_blocks"]),
            tuple(int(r) for r in u.get("attn_res") or ()),
            int(u.get("norm_groups") or DEFAULT_NORM_GROUPS),
            int(cfg["model"].get("diffusion", {}).get("image_size", DEFAULT_IMAGE_SIZE)),
            float(u.get("dropout") or 0.0),
            int(u.get("in_channel", 6)),
            int(u.get("out_channel", 3)),
        )
    except (KeyError, TypeError) as exc:
        raise JanspiryFormatError(f"the config's model.unet lacks or mistypes {exc}") from exc


def layout(unet: UNetConfig) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Their key (without prefix) -> (our key, shape), for our U-Net of this config (built on the meta device)."""
    try:
        with torch.device("meta"):
            net = UNet(unet)
    except ValueError as exc:  # GroupNorm: a channel count not divisible by norm_groups
        raise JanspiryFormatError(
            f"the U-Net cannot be built with norm_groups {unet.groups} ({exc}); "
            "pass the config file that trained the checkpoint (its model.unet.norm_groups)"
        ) from exc
    return {janspiry_key(k): (k, tuple(v.shape)) for k, v in net.state_dict().items()}


def check_shapes(weights: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]], where: str) -> None:
    """One clear error naming the first key whose presence or shape differs from the architecture."""
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    wrong = [k for k in expected if k in weights and tuple(weights[k].shape) != expected[k]]
    if not (missing or extra or wrong):
        return
    if wrong:
        k = wrong[0]
        first = f"key {PREFIX}{k} has shape {tuple(weights[k].shape)} in the checkpoint but {expected[k]} there"
    elif missing:
        first = f"key {PREFIX}{missing[0]} (shape {expected[missing[0]]}) is missing from the checkpoint"
    else:
        first = f"key {PREFIX}{extra[0]} (shape {tuple(weights[extra[0]].shape)}) has no place there"
    raise JanspiryFormatError(
        f"the checkpoint does not match {where}: {first} "
        f"({len(wrong)} shape mismatches, {len(missing)} missing keys, {len(extra)} extra keys)"
    )


def schedule_from(entry: dict[str, Any] | None) -> Schedule:
    """A `beta_schedule.train|val` entry of the config -> our schedule (linear and cosine are supported)."""
    e = {**DEFAULT_SCHEDULE, **(entry or {})}
    kind, n = e["schedule"], int(e["n_timestep"])
    if kind == "linear":
        return linear(n, float(e["linear_start"]), float(e["linear_end"]))
    if kind == "cosine":
        return cosine(n, float(e.get("cosine_s", 8e-3)))
    raise JanspiryFormatError(f"beta schedule {kind!r} is not supported for import; supported: linear, cosine")


def _scale_from(cfg: dict[str, Any]) -> int | None:
    for split in (cfg.get("datasets") or {}).values():
        if isinstance(split, dict) and split.get("l_resolution") and split.get("r_resolution"):
            return int(split["r_resolution"]) // int(split["l_resolution"])
    return None


def resolve_scale(
    cfg: dict[str, Any] | None, given: int | None, fallback: int | None = None, fallback_why: str = ""
) -> tuple[int, str]:
    """The upscaling factor of an import and where it came from (the weights never say it).

    Order: `given` (--scale / option scale), the config's `datasets` (r_resolution / l_resolution), `fallback`
    (the task's, for `sr3:file.pth` evaluated on the fly), else that code's default 8 (its 16->128 faces).
    """
    if given is not None:
        if int(given) < 1:
            raise JanspiryFormatError(f"scale must be a positive integer, got {given}")
        return int(given), "given (--scale / option scale)"
    from_cfg = _scale_from(cfg) if cfg is not None else None
    if from_cfg is not None:
        return from_cfg, "the config's datasets (r_resolution / l_resolution)"
    where = "the config has no datasets section" if cfg is not None else "no config was given"
    if fallback is not None:
        return int(fallback), f"{fallback_why or 'the fallback'} ({where}; give the scale to set it)"
    return DEFAULT_SCALE, f"that code's default 16->128 ({where}): pass --scale N if the model is not 8x"


def _check_betas(buffers: dict[str, torch.Tensor], schedules: list[Schedule], where: str) -> None:
    """The `betas` buffer saved with the weights must be one of the schedules the config (or default) names."""
    if "betas" not in buffers:
        return
    got = buffers["betas"].double()
    for s in schedules:
        if tuple(got.shape) == (s.T,) and torch.allclose(got, s.beta(), rtol=1e-5, atol=1e-9):
            return
    want = " or ".join(f"{s.to_spec()} (shape ({s.T},))" for s in schedules)
    raise JanspiryFormatError(
        f"the checkpoint does not match {where}: key betas has shape {tuple(got.shape)} "
        f"(from {float(got[0]):.3g} to {float(got[-1]):.3g}) but the schedule there is {want}"
    )


def convert(
    gen: str | Path,
    config: str | Path | None = None,
    scale: int | None = None,
    fallback_scale: int | None = None,
    fallback_why: str = "",
) -> Checkpoint:
    """An `I…_gen.pth` (+ its config JSON) -> an SR3 checkpoint of this project (kind `sr3`), in memory.

    What the weights cannot confirm (norm_groups, the image size that places attention, the scale) is listed
    with its source under extra["imported"]["unconfirmed"]; `scale` wins over the config, `fallback_scale`
    (with `fallback_why`) is used only where neither gives one.
    """
    gen = Path(gen)
    weights, buffers = read_gen(gen)
    cfg = read_commented_json(config) if config is not None else None
    if cfg is not None:
        # The config names the architecture: every key and shape must match it.
        where = f"the config {config}"
        unet = unet_from_config(cfg)
        sched_cfg = cfg["model"].get("beta_schedule") or {}
        train_s, val_s = schedule_from(sched_cfg.get("train")), schedule_from(sched_cfg.get("val"))
        u = cfg["model"].get("unet") or {}
        groups_from = "the config" if u.get("norm_groups") else f"that code's default {DEFAULT_NORM_GROUPS}"
        size_from = "the config" if (cfg["model"].get("diffusion") or {}).get("image_size") else "that code's default"
    else:
        # No config: the architecture from the key shapes, that code's defaults for the rest.
        where = "the architecture read from its keys (norm_groups 32, image_size 128: pass --config otherwise)"
        unet = infer_unet(weights, gen)
        train_s = val_s = schedule_from(None)
        groups_from, size_from = f"that code's default {DEFAULT_NORM_GROUPS}", "that code's default"
    scale, scale_from = resolve_scale(cfg, scale, fallback_scale, fallback_why)
    if unet.in_channels != 6 or unet.out_channels != 3:
        raise JanspiryFormatError(
            f"{gen}: a U-Net with {unet.in_channels} input and {unet.out_channels} output channels is not a "
            "conditional SR model (6 in: upsampled LR + y_t, 3 out)"
        )
    keys = layout(unet)
    check_shapes(weights, {k: shape for k, (_, shape) in keys.items()}, where)
    _check_betas(buffers, [train_s, val_s], where)
    sr3 = SR3Config(
        unet=unet,
        scale=int(scale),
        parameterization="eps",
        embedding="sqrt_gamma",
        loss="l1",
        train_schedule=train_s.to_spec(),
    )
    # Our state dict: SR3Denoiser's `net.*` keys, each taken from its counterpart.
    state = {f"net.{ours}": weights[k] for k, (ours, _) in keys.items()}
    extra = {
        # That code samples with its `val` schedule, every step, posterior variance, ŷ0 clipped.
        "sampling": {
            "sampler": "ancestral",
            "steps": val_s.T,
            "clip_x0": True,
            "variance": "posterior",
            "schedule": val_s.to_spec(),
        },
        "imported": {
            "from": "Janspiry/Image-Super-Resolution-via-Iterative-Refinement",
            "gen": str(gen),
            # Values no weight shape can confirm: a wrong one loads silently (see `self_check`).
            "unconfirmed": {
                "norm_groups": f"{unet.groups} from {groups_from}",
                "image_size": f"{unet.image_size} from {size_from} (only its ratio to attn_res is in the weights)",
                "scale": f"{scale} from {scale_from}",
            },
        }
        | ({"config": str(config)} if config is not None else {}),
    }
    return Checkpoint(kind="sr3", config=config_to_dict(sr3), state_dict=state, extra=extra, path=None)


def import_checkpoint(
    gen: str | Path,
    out: str | Path,
    config: str | Path | None = None,
    scale: int | None = None,
    self_check: bool = True,
    log=print,
) -> Path:
    """`evalsuite sr3 import GEN.pth [--config CONFIG.json] -o OUT.safetensors`: convert, check and write.

    Says what the weights cannot confirm (recorded under extra["imported"]["unconfirmed"]) and, with
    `self_check`, measures the ε error on natural photos for every valid norm_groups
    (`baselines.sr3.import_check`), recorded under extra["imported"]["self_check"]. A config whose norm_groups
    is clearly beaten by another is refused (JanspiryFormatError naming the better value); a high error with
    no better alternative (an untrained checkpoint) is a warning.
    """
    ck = convert(gen, config, scale)
    for key, what in ck.extra["imported"]["unconfirmed"].items():
        log(f"note: {key} = {what}: not in the weights, so the import cannot confirm it")
    if self_check:
        from baselines.sr3.import_check import self_check as run_check

        verdict = run_check(ck)
        ck.extra["imported"]["self_check"] = verdict.to_dict()
        if verdict.wrong_groups:
            raise JanspiryFormatError(f"{gen}: self-check failed: {verdict.message}; nothing written to {out}")
        log(("self-check: " if verdict.passed else "warning: self-check failed: ") + verdict.message)
    else:
        ck.extra["imported"]["self_check"] = {"skipped": True}
        log("warning: self-check skipped (--no-self-check): a wrong norm_groups would go unnoticed")
    return save_checkpoint(out, ck.state_dict, ck.kind, ck.config, ck.extra)
