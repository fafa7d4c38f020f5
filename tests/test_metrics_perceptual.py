"""LPIPS: our weights-folder path equals the lpips package's own pretrained path on the same backbone file."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from evalsuite.metrics.base import MetricContext
from evalsuite.metrics.perceptual import LPIPS, load_backbone
from evalsuite.metrics.weights import ALLOW_ENV, SPECS, write_random_weights
from evalsuite.weights import MissingWeightsError


@pytest.fixture(scope="module")
def alex_file(tmp_path_factory) -> Path:
    """A randomly initialized torchvision AlexNet saved under its official file name."""
    folder = tmp_path_factory.mktemp("weights")
    return write_random_weights("lpips-alex", folder / SPECS["lpips-alex"].entry.filename, seed=3)


def _pair(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(3, 3, 64, 64, generator=g)
    b = (a + 0.2 * torch.randn(3, 3, 64, 64, generator=g)).clamp(0, 1)
    return a, b


def test_lpips_equals_the_lpips_package_with_the_same_backbone(alex_file, monkeypatch, tmp_path):
    import lpips

    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(alex_file.parent))
    monkeypatch.setenv(ALLOW_ENV, "1")
    metric = LPIPS(MetricContext(torch.device("cpu"), 4))
    # The package's standard path: torchvision loads the backbone file from torch hub's cache.
    hub = tmp_path / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / alex_file.name).symlink_to(alex_file)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net="alex", verbose=False).eval()
    a, b = _pair(0)
    ours = metric.update(b, a, a, ["x", "y", "z"])["lpips"]
    with torch.no_grad():
        theirs = reference(b * 2 - 1, a * 2 - 1).reshape(-1)
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    assert (ours > 0).all()
    assert metric.update(a, a, a, ["x", "y", "z"])["lpips"].abs().max() < 1e-6
    # A different backbone gives different distances: the file is really used.
    other = write_random_weights("lpips-alex", tmp_path / "other" / alex_file.name, seed=4)
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(other.parent))
    changed = LPIPS(MetricContext(torch.device("cpu"), 4)).update(b, a, a, ["x", "y", "z"])["lpips"]
    assert not torch.allclose(changed, ours)


def test_lpips_refuses_nonstandard_or_missing_backbones(alex_file, monkeypatch, tmp_path):
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(alex_file.parent))
    with pytest.raises(MissingWeightsError, match="not the official alexnet-owt-7be5be79.pth"):
        LPIPS(MetricContext(torch.device("cpu"), 4))
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(tmp_path))
    monkeypatch.setattr("evalsuite.metrics.weights._download", _offline)
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth") as err:
        LPIPS(MetricContext(torch.device("cpu"), 4, options={"lpips_net": "vgg"}))
    assert str(tmp_path) in str(err.value) and "network unreachable" in str(err.value)
    with pytest.raises(ValueError, match="lpips_net must be one of"):
        LPIPS(MetricContext(torch.device("cpu"), 4, options={"lpips_net": "squeeze"}))


def _offline(url: str, dest: Path, prefix: str | None) -> None:
    raise OSError("network unreachable (test)")


def test_load_backbone_rejects_a_file_of_another_network():
    import lpips

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).net
    import torchvision.models as tvm

    with pytest.raises(ValueError, match="has no features.0.weight"):
        load_backbone(net, tvm.resnet18(weights=None).state_dict(), "resnet18.pth")
    vgg_like = {"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}
    with pytest.raises(ValueError, match="has shape"):
        load_backbone(net, vgg_like, "vgg.pth")


def _random_vgg_features(seed: int) -> dict[str, torch.Tensor]:
    """torchvision's VGG-16 convolutional trunk, randomly initialized, under its `features.<i>` keys."""
    from torchvision.models import vgg

    with torch.device("meta"):
        shapes = vgg.make_layers(vgg.cfgs["D"]).state_dict()
    g = torch.Generator().manual_seed(seed)
    # He-scaled Gaussian weights (what PyTorch's init draws, without its slower per-layer calls), small biases.
    return {
        f"features.{k}": torch.randn(v.shape, generator=g) * (2 / v[0].numel()) ** 0.5 if v.dim() == 4
        else 0.01 * torch.randn(v.shape, generator=g)
        for k, v in shapes.items()
    }


def test_dists_equals_the_dists_package_with_the_same_backbone(monkeypatch, tmp_path):
    import types

    import DISTS_pytorch.DISTS_pt as dists_pt
    from torchvision.models import vgg

    from evalsuite.metrics.base import build_metric

    state, other_state = _random_vgg_features(5), _random_vgg_features(6)
    torch.save(state, tmp_path / SPECS["lpips-vgg"].entry.filename)
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(tmp_path))
    monkeypatch.setenv(ALLOW_ENV, "1")
    ours = build_metric("dists", MetricContext(torch.device("cpu"), 4))
    # The alpha/beta file was copied out of the DISTS-pytorch wheel: the official one, by its sha256.
    assert (tmp_path / "dists_weights.pt").exists()

    # The package's own model, its torchvision VGG-16 given the same random trunk instead of a download
    # (DISTS_pt reads only `.features`).
    def same_vgg(*args, **kwargs):
        with torch.device("meta"):
            trunk = vgg.make_layers(vgg.cfgs["D"])
        trunk.load_state_dict({k.removeprefix("features."): v for k, v in state.items()}, assign=True)
        return types.SimpleNamespace(features=trunk)

    monkeypatch.setattr(dists_pt.models, "vgg16", same_vgg)
    reference = dists_pt.DISTS().eval()
    a, b = _pair(1)
    got = ours.update(b, a, a, ["x", "y", "z"])["dists"]
    want = reference(b, a).reshape(-1)
    assert got.shape == (3,)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert (got > 0).all() and ours.update(a, a, a, ["x", "y", "z"])["dists"].abs().max() < 1e-5
    # Another backbone changes the distances: the file is really used.
    torch.save(other_state, tmp_path / SPECS["lpips-vgg"].entry.filename)
    other = build_metric("dists", MetricContext(torch.device("cpu"), 4)).update(b, a, a, ["x", "y", "z"])["dists"]
    assert not torch.allclose(other, got)


def test_dists_refuses_missing_or_nonstandard_files(monkeypatch, tmp_path):
    from evalsuite.metrics.perceptual import DISTS

    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(tmp_path))
    monkeypatch.setattr("evalsuite.metrics.weights._download", _offline)
    with pytest.raises(MissingWeightsError, match="vgg16-397923af.pth"):
        DISTS(MetricContext(torch.device("cpu"), 4))
    torch.save(_random_vgg_features(5), tmp_path / SPECS["lpips-vgg"].entry.filename)
    with pytest.raises(MissingWeightsError, match="not the official vgg16-397923af.pth"):
        DISTS(MetricContext(torch.device("cpu"), 4))
    # A file under the alpha/beta name that is not the published one is refused too.
    monkeypatch.setenv(ALLOW_ENV, "1")
    (tmp_path / "dists_weights.pt").write_bytes(b"not the published weights")
    monkeypatch.delenv(ALLOW_ENV)
    with pytest.raises(MissingWeightsError, match="vgg16|dists_weights.pt"):
        DISTS(MetricContext(torch.device("cpu"), 4, options={"allow_nonstandard_weights": False}))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_min_size_is_the_smallest_side_its_backbone_takes(net, monkeypatch, tmp_path):
    from evalsuite.metrics.base import metric_info

    ctx = MetricContext(torch.device("cpu"), 4, options={"lpips_net": net})
    side = metric_info("lpips").min_size(ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lpips

        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False).eval()
    x = torch.rand(1, 3, side, side)
    with torch.no_grad():
        assert model(x, x).shape == (1, 1, 1, 1)
        with pytest.raises(RuntimeError):
            model(x[..., 1:, 1:], x[..., 1:, 1:])


# With the official backbones in the weights folder: our LPIPS and DISTS equal the packages' own on real photos.
# Offline (this project's machines) they skip, saying which file is missing and how to get it.
OFFICIAL_HOW = "`evalsuite weights fetch {name}` (or copy {file} into {folder}), then rerun"


def _official(name: str) -> Path:
    """The official weights file `name` in the user's weights folder, or a skip naming what is missing."""
    from evalsuite.metrics.weights import nonstandard_reason
    from evalsuite.weights import get_weight, weights_dir

    file, folder = get_weight(name).filename, weights_dir()
    how = OFFICIAL_HOW.format(name=name, file=file, folder=folder)
    path = folder / file
    if not path.is_file():
        pytest.skip(f"official {file} ({name}) is not in {folder}: {how}")
    reason = nonstandard_reason(name, path)
    if reason is not None:
        pytest.skip(f"{path} is not the official {file} ({reason}): {how}")
    return path


def _photo_pairs(photos_dir: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(SR, HR) per real photo: SR is a 4x bicubic round trip, 8-bit."""
    from PIL import Image

    from evalsuite.degrade import degrade, quantize, to_tensor, upsample

    out = []
    for p in sorted(photos_dir.glob("*.png")):
        hr = to_tensor(Image.open(p).convert("RGB"))[None]
        hr = hr[..., : hr.shape[-2] // 4 * 4, : hr.shape[-1] // 4 * 4]
        out.append((quantize(upsample(quantize(degrade(hr, 4)), 4)), hr))
    return out


def _hub_with(path: Path, tmp_path: Path, monkeypatch) -> None:
    """torch hub's checkpoint folder holding only `path`: torchvision's pretrained loaders read it, never download."""
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    (hub / "checkpoints" / path.name).symlink_to(path)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_official_lpips_equals_the_lpips_package_on_real_photos(net, photos_dir, monkeypatch, tmp_path):
    import lpips

    backbone = _official(f"lpips-{net}")
    monkeypatch.delenv(ALLOW_ENV, raising=False)  # official weights only
    ours = LPIPS(MetricContext(torch.device("cpu"), 4, options={"lpips_net": net}))
    assert ours.weight.standard
    _hub_with(backbone, tmp_path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net=net, verbose=False).eval()  # pretrained heads and backbone, the package's way
    for sr, hr in _photo_pairs(photos_dir):
        got = ours.update(sr, hr, hr, ["x"])["lpips"]
        with torch.no_grad():
            want = reference(sr * 2 - 1, hr * 2 - 1).reshape(-1)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
        assert 1e-3 < float(got) < 1  # a blurred photo is measurably far from the original


def test_official_dists_equals_the_dists_package_on_real_photos(photos_dir, monkeypatch, tmp_path):
    import DISTS_pytorch.DISTS_pt as dists_pt

    from evalsuite.metrics.base import build_metric

    backbone = _official("lpips-vgg")
    # A private weights folder: the official VGG-16, and the alpha/beta copied there from the wheel.
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / backbone.name).symlink_to(backbone)
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(folder))
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    ours = build_metric("dists", MetricContext(torch.device("cpu"), 4))
    _hub_with(backbone, tmp_path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained=` deprecation notice
        reference = dists_pt.DISTS().eval()  # torchvision's pretrained VGG-16 and the wheel's alpha/beta
    for sr, hr in _photo_pairs(photos_dir):
        got = ours.update(sr, hr, hr, ["x"])["dists"]
        with torch.no_grad():
            want = reference(sr, hr).reshape(-1)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-4)
        assert 1e-3 < float(got) < 1
