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
