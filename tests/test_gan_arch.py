"""GAN architectures and converters on small synthetic models: shapes, weight layouts, file formats, losses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from baselines.gan.convert_ncnn import TAG_FP16, NcnnFormatError, ncnn_to_rrdbnet, read_conv_weights
from baselines.gan.convert_tfjs import (
    TfjsFormatError,
    depth_to_space_permutation,
    load_rrdn,
    load_tfjs_rrdn,
)
from baselines.gan.converted import save_converted
from baselines.gan.esrgan_thick import RRDN, RRDNConfig
from baselines.gan.recipe import Discriminator, ragan_d_loss, ragan_g_loss
from baselines.gan.rrdbnet import RRDBNet, RRDBNetConfig, config_from_state_dict, load_rrdbnet

TINY_RRDB = {"num_feat": 8, "num_block": 2, "num_grow_ch": 4}


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_rrdbnet_shapes_every_scale(scale: int) -> None:
    net = RRDBNet(RRDBNetConfig(scale=scale, **TINY_RRDB))
    y = net(torch.rand(2, 3, 8, 12))
    assert y.shape == (2, 3, 8 * scale, 12 * scale)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_rrdn_shapes_every_scale(scale: int) -> None:
    net = RRDN(RRDNConfig(scale=scale, C=2, D=2, G=4, G0=8, T=2))
    y = net(torch.rand(2, 3, 6, 10))
    assert y.shape == (2, 3, 6 * scale, 10 * scale)


def test_realesrgan_x4plus_size_and_official_names() -> None:
    net = RRDBNet()
    assert sum(p.numel() for p in net.parameters()) == 16_697_987  # Real-ESRGAN x4plus
    keys = set(net.state_dict())
    assert {"conv_first.weight", "body.22.rdb3.conv5.bias", "conv_body.weight", "conv_up2.weight"} <= keys
    assert {"conv_hr.weight", "conv_last.bias"} <= keys and not any("conv_up3" in k for k in keys)


def test_rrdn_thick_size() -> None:
    # esrgan-thick x4 as converted from its TF.js weights: 7,260,740 parameters.
    assert sum(p.numel() for p in RRDN(RRDNConfig(scale=4)).parameters()) == 7_260_740


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_rrdbnet_config_from_state_dict_round_trip(scale: int) -> None:
    cfg = RRDBNetConfig(scale=scale, **TINY_RRDB)
    assert config_from_state_dict(RRDBNet(cfg).state_dict()) == cfg


def test_load_official_pth_layout(tmp_path: Path) -> None:
    # Official Real-ESRGAN releases store the generator under params_ema (and params).
    net = RRDBNet(RRDBNetConfig(**TINY_RRDB))
    sd = net.state_dict()
    torch.save({"params_ema": sd, "params": {k: torch.zeros_like(v) for k, v in sd.items()}}, tmp_path / "g.pth")
    loaded = load_rrdbnet(tmp_path / "g.pth")
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(loaded(x), net(x))
    torch.save({"foo": 1}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth"):
        load_rrdbnet(tmp_path / "bad.pth")


# ---------- ncnn converter on synthetic files ----------


def _write_ncnn(folder: Path, net: RRDBNet, storage: str) -> tuple[Path, Path]:
    """Write the convs of `net` as an ncnn .param/.bin pair (weights stored as `storage`)."""
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    lines = ["7767517", f"{len(convs) + 2} {len(convs) + 2}", "Input in 0 1 data"]
    blob = b""
    prev = "data"
    for i, (_, m) in enumerate(convs):
        w = m.weight.detach().numpy()
        lines.append(f"Convolution conv{i} 1 1 {prev} b{i} 0={w.shape[0]} 1=3 4=1 5=1 6={w.size}")
        prev = f"b{i}"
        if storage == "fp16":
            blob += TAG_FP16.to_bytes(4, "little") + w.astype("<f2").tobytes()
            blob += b"\0" * (-len(blob) % 4)
        elif storage == "fp32":
            blob += b"\0\0\0\0" + w.astype("<f4").tobytes()
        else:  # 8-bit table
            table = np.linspace(w.min(), w.max(), 256, dtype=np.float32)
            codes = np.abs(w.reshape(-1, 1) - table[None]).argmin(1).astype(np.uint8)
            blob += bytes([1, 0, 0, 0]) + table.tobytes() + codes.tobytes() + b"\0" * (-codes.size % 4)
        blob += m.bias.detach().numpy().astype("<f4").tobytes()
    lines.append(f"ReLU relu 1 1 {prev} output")
    (folder / "m.param").write_text("\n".join(lines) + "\n")
    (folder / "m.bin").write_bytes(blob)
    return folder / "m.param", folder / "m.bin"


@pytest.mark.parametrize("storage", ["fp16", "fp32", "table8"])
def test_ncnn_converter_synthetic(tmp_path: Path, storage: str) -> None:
    torch.manual_seed(0)
    net = RRDBNet(RRDBNetConfig(**TINY_RRDB)).eval()
    param, binf = _write_ncnn(tmp_path, net, storage)
    conv = ncnn_to_rrdbnet(param, binf, scale=4)
    assert conv.cfg == net.cfg
    for k, v in net.state_dict().items():
        got = conv.state_dict()[k]
        if storage == "fp16" and k.endswith("weight"):
            torch.testing.assert_close(got, v.half().float(), rtol=0, atol=0)
        elif storage == "table8" and k.endswith("weight"):
            step = float(v.max() - v.min()) / 255
            assert float((got - v).abs().max()) <= step / 2 + 1e-6
        else:
            torch.testing.assert_close(got, v, rtol=0, atol=0)


def test_ncnn_converter_errors(tmp_path: Path) -> None:
    net = RRDBNet(RRDBNetConfig(**TINY_RRDB))
    param, binf = _write_ncnn(tmp_path, net, "fp32")
    binf.write_bytes(binf.read_bytes()[:-8])
    with pytest.raises(NcnnFormatError, match="ends early"):
        read_conv_weights(param, binf)
    param.write_text("not a param file\n")
    with pytest.raises(NcnnFormatError, match="magic"):
        read_conv_weights(param, binf)
    # A graph whose conv count does not fit an RRDBNet is refused by name.
    small = RRDN(RRDNConfig(scale=2, C=1, D=1, G=4, G0=8, T=1))
    p2, b2 = _write_ncnn(tmp_path, small, "fp32")  # type: ignore[arg-type]
    with pytest.raises(NcnnFormatError, match="do not form an RRDBNet"):
        ncnn_to_rrdbnet(p2, b2)
    # A conv stored without a bias (5=0) does not fit RRDBNet, whose convs all have one.
    param, binf = _write_ncnn(tmp_path, net, "fp32")
    start = 4 + 4 * net.conv_first.weight.numel()  # the first conv's bias follows its tagged weights
    blob = binf.read_bytes()
    binf.write_bytes(blob[:start] + blob[start + 4 * net.conv_first.out_channels :])
    param.write_text(param.read_text().replace(" 5=1 ", " 5=0 ", 1))
    with pytest.raises(NcnnFormatError, match="conv0 .* and no bias"):
        ncnn_to_rrdbnet(param, binf)


# ---------- TF.js converter on a synthetic model.json + shards ----------


def _layer(cls: str, name: str, inbound: list[str], **config) -> dict:
    return {"class_name": cls, "name": name, "config": {"name": name, **config},
            "inbound_nodes": [[[i, 0, 0, {}] for i in inbound]] if inbound else []}


def write_tfjs_rrdn(folder: Path, cfg: RRDNConfig, seed: int = 0, quantize: str | None = None,
                    shard_bytes: int = 4096) -> None:
    """A Keras/TF.js layers model of an RRDN, laid out exactly like @upscalerjs/esrgan-thick's model.json."""
    rng = np.random.default_rng(seed)
    layers, weights = [_layer("InputLayer", "LR_input", [], batch_input_shape=[None, None, None, 3])], {}

    def conv(name: str, src: str, c_in: int, c_out: int) -> str:
        layers.append(_layer("Conv2D", name, [src], filters=c_out, kernel_size=[3, 3], strides=[1, 1], padding="same",
                             data_format="channels_last", dilation_rate=[1, 1], activation="linear", use_bias=True))
        weights[f"{name}/kernel"] = rng.normal(0, (2 / (9 * c_in)) ** 0.5, (3, 3, c_in, c_out)).astype(np.float32)
        weights[f"{name}/bias"] = rng.normal(0, 0.05, c_out).astype(np.float32)
        return name

    n_beta = 0

    def beta(src: str) -> str:
        nonlocal n_beta
        name = f"multiply_beta_{n_beta}"
        n_beta += 1
        layers.append(_layer("MultiplyBeta", name, [src]))
        return name

    pre = conv("Pre_blocks_conv", "LR_input", 3, cfg.G0)
    x = pre
    for t in range(1, cfg.T + 1):
        block_in = x
        for d in range(1, cfg.D + 1):
            h, ch = x, cfg.G0
            for c in range(1, cfg.C + 1):
                f = conv(f"F_{t}_{d}_{c}", h, ch, cfg.G)
                layers.append(_layer("Activation", f"F_{t}_{d}_{c}_Relu", [f], activation="relu"))
                layers.append(_layer("Concatenate", f"RDB_Concat_{t}_{d}_{c}", [h, f"F_{t}_{d}_{c}_Relu"], axis=3))
                h, ch = f"RDB_Concat_{t}_{d}_{c}", ch + cfg.G
            lff = conv(f"LFF_{t}_{d}", h, ch, cfg.G0)
            layers.append(_layer("Add", f"LRL_{t}_{d}", [x, beta(lff)]))
            x = f"LRL_{t}_{d}"
        layers.append(_layer("Add", f"RRDB_{t}_out", [block_in, beta(x)]))
        x = f"RRDB_{t}_out"
    post = conv("post_blocks_conv", x, cfg.G0, cfg.G0)
    layers.append(_layer("Add", "GRL", [post, pre]))
    ps = conv("PreShuffle", "GRL", cfg.G0, 3 * cfg.scale**2)
    layers.append(_layer(f"PixelShuffle{cfg.scale}x", "pixel_shuffle", [ps]))
    conv("SR", "pixel_shuffle", 3, 3)
    specs, buf = [], b""
    for name, arr in weights.items():
        spec = {"name": name, "shape": list(arr.shape), "dtype": "float32"}
        if quantize == "uint8":
            lo, hi = float(arr.min()), float(arr.max())
            scale = (hi - lo) / 255 or 1.0
            spec["quantization"] = {"dtype": "uint8", "min": lo, "scale": scale}
            buf += np.round((arr - lo) / scale).astype(np.uint8).tobytes()
        else:
            buf += arr.tobytes()
        specs.append(spec)
    # Cut the weight bytes into several shards, as the TF.js converter does.
    paths = []
    for i in range(0, len(buf), shard_bytes):
        paths.append(f"group1-shard{i // shard_bytes + 1}.bin")
        (folder / paths[-1]).write_bytes(buf[i : i + shard_bytes])
    topology = {"class_name": "Functional", "config": {"name": "rrdn", "layers": layers,
                "input_layers": [["LR_input", 0, 0]], "output_layers": [["SR", 0, 0]]}}
    meta = {"format": "layers-model", "generatedBy": "keras v2.10.0", "convertedBy": "test",
            "modelTopology": {"keras_version": "2.10.0", "backend": "tensorflow", "model_config": topology},
            "weightsManifest": [{"paths": paths, "weights": specs}]}
    (folder / "model.json").write_text(json.dumps(meta))


def run_keras_graph(folder: Path, x_nhwc: np.ndarray) -> np.ndarray:
    """Execute a model.json graph directly in NHWC numpy (Keras semantics): the converter's independent oracle."""
    from baselines.gan.convert_tfjs import read_tfjs_model

    topology, weights = read_tfjs_model(folder)
    values: dict[str, np.ndarray] = {}
    for layer in topology["config"]["layers"]:
        ins = [values[i[0]] for i in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [x_nhwc]
        cls, name = layer["class_name"], layer["name"]
        if cls == "InputLayer":
            out = ins[0]
        elif cls == "Conv2D":
            k, b = weights[f"{name}/kernel"].astype(np.float64), weights[f"{name}/bias"]
            a = np.pad(ins[0].astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
            h, w = ins[0].shape[1:3]
            taps = [(i, j) for i in range(3) for j in range(3)]
            out = sum(np.einsum("nhwc,co->nhwo", a[:, i : i + h, j : j + w], k[i, j]) for i, j in taps)
            out = out + b
        elif cls == "Activation":
            out = np.maximum(ins[0], 0)
        elif cls == "Concatenate":
            out = np.concatenate(ins, axis=-1)
        elif cls == "Add":
            out = ins[0] + ins[1]
        elif cls == "MultiplyBeta":
            out = ins[0] * 0.2
        else:  # PixelShuffle{s}x = tf.depth_to_space(x, s), NHWC
            s = int(cls[len("PixelShuffle") : -1])
            n, h, w, c = ins[0].shape
            out = ins[0].reshape(n, h, w, s, s, c // s**2).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * s, w * s, -1)
        values[name] = out
    return values["SR"]


@pytest.mark.parametrize("scale,quantize", [(2, None), (3, None), (4, "uint8"), (8, None)])
def test_tfjs_converter_matches_keras_graph(tmp_path: Path, scale: int, quantize: str | None) -> None:
    cfg = RRDNConfig(scale=scale, C=2, D=2, G=4, G0=8, T=2)
    write_tfjs_rrdn(tmp_path, cfg, seed=scale, quantize=quantize)
    model = load_tfjs_rrdn(tmp_path)
    assert model.cfg == cfg
    x = np.random.default_rng(1).random((2, 5, 7, 3), dtype=np.float32)
    ref = run_keras_graph(tmp_path, x)
    with torch.no_grad():
        y = model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).double().numpy()
    assert y.shape == ref.shape == (2, 5 * scale, 7 * scale, 3)
    assert np.abs(y - ref).max() < 1e-4 * max(1.0, np.abs(ref).max())
    # Round trip through the safetensors file the weights registry keeps.
    save_converted(model, tmp_path / "m.safetensors", "rrdn", source="test")
    again = load_rrdn(tmp_path / "m.safetensors")
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    torch.testing.assert_close(again(xt), model(xt), rtol=0, atol=0)


def test_depth_to_space_permutation_is_needed_and_right() -> None:
    # pixel_shuffle(conv output permuted) must equal TF's depth_to_space of the unpermuted output.
    s, x = 3, torch.randn(1, 27, 2, 2)
    perm = depth_to_space_permutation(s)
    tf_d2s = x.permute(0, 2, 3, 1).reshape(1, 2, 2, s, s, 3).permute(0, 1, 3, 2, 4, 5).reshape(1, 6, 6, 3)
    torch.testing.assert_close(torch.pixel_shuffle(x[:, perm], s).permute(0, 2, 3, 1), tf_d2s)
    assert not torch.equal(torch.pixel_shuffle(x, s).permute(0, 2, 3, 1), tf_d2s)


def test_tfjs_converter_errors(tmp_path: Path) -> None:
    cfg = RRDNConfig(scale=2, C=1, D=1, G=4, G0=8, T=1)
    write_tfjs_rrdn(tmp_path, cfg)
    (tmp_path / "group1-shard2.bin").unlink()
    with pytest.raises(FileNotFoundError, match="group1-shard2.bin"):
        load_tfjs_rrdn(tmp_path)
    write_tfjs_rrdn(tmp_path, cfg)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["modelTopology"]["model_config"]["config"]["layers"][1]["class_name"] = "BatchNormalization"
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(TfjsFormatError, match="not an RRDN topology"):
        load_tfjs_rrdn(tmp_path)


# ---------- GAN pieces ----------


def test_discriminator_any_crop() -> None:
    d = Discriminator(d_feat=8)
    for size in (32, 48, 128):
        assert d(torch.rand(3, 3, size, size)).shape == (3,)


def test_ragan_losses_follow_the_relativistic_judgments() -> None:
    real, fake = torch.tensor([3.0, 2.0]), torch.tensor([-2.0, -3.0])
    # A discriminator that ranks real above fake has a small loss; the generator's loss is large.
    assert ragan_d_loss(real, fake) < 0.01 < 4.0 < ragan_g_loss(real, fake)
    # Equal scores: both are log 2.
    z = torch.zeros(4)
    torch.testing.assert_close(ragan_d_loss(z, z), torch.tensor(np.log(2.0), dtype=torch.float32))
    torch.testing.assert_close(ragan_g_loss(z, z), torch.tensor(np.log(2.0), dtype=torch.float32))
    # Swapping real and fake swaps the roles exactly.
    torch.testing.assert_close(ragan_d_loss(real, fake), ragan_g_loss(fake, real))


@pytest.mark.parametrize("scale", [1, 2])
def test_rrdbnet_unshuffle_scales_take_odd_sizes(scale: int) -> None:
    net = RRDBNet(RRDBNetConfig(scale=scale, **TINY_RRDB)).eval()
    x = torch.rand(1, 3, 9, 7)
    y = net(x)
    assert y.shape == (1, 3, 9 * scale, 7 * scale)
    # The crop keeps the part computed from the real pixels: it matches the even-size run on that region.
    u = 4 if scale == 1 else 2
    big = net(F.pad(x, (0, -7 % u, 0, -9 % u), mode="replicate"))
    torch.testing.assert_close(y, big[..., : 9 * scale, : 7 * scale])
