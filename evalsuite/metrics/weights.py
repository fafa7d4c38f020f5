"""Every weights file the perceptual, distribution and classification metrics need, and their checks.

Each file is registered in the shared registry (`evalsuite.weights`) under the exact file name its library
uses, with its download URL; `fetch` downloads it where the network allows. A file that is present but is
not the official one (sha256 prefix mismatch, or a file made by `write_random_weights`) is refused unless
non-standard weights are explicitly allowed, and then every number it gives carries a NON-STANDARD note.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from evalsuite.weights import MissingWeightsError, WeightFile, ensure_weight, get_weight, register_weight, sha256_file

# Set to 1 (or the metric option `allow_nonstandard_weights: true`) to compute metrics with non-official weights.
ALLOW_ENV = "EVALSUITE_ALLOW_NONSTANDARD_WEIGHTS"
# The extra file a torchscript made by `write_random_weights` carries, so it is never taken for the official one.
MARKER = "evalsuite_nonstandard.txt"


@dataclass(frozen=True)
class MetricWeight:
    """A metric weights file: its registry entry and the official sha256 prefix when one is published."""

    entry: WeightFile
    sha256_prefix: str | None  # the hash prefix torch hub embeds in the file name; None when none is published


def _download(url: str, dest: Path, prefix: str | None) -> None:
    """Download `url` to `dest`, checking the sha256 prefix when there is one."""
    torch.hub.download_url_to_file(url, str(dest), hash_prefix=prefix, progress=True)


def _copy_from_package(dists: tuple[str, ...], member: str, dest: Path) -> None:
    """Copy `member` out of the first installed distribution in `dists` that ships it (nothing is imported)."""
    import importlib.metadata as md
    import shutil

    for dist in dists:
        try:
            path = Path(str(md.distribution(dist).locate_file(member)))
        except md.PackageNotFoundError:
            continue
        if path.is_file():
            shutil.copyfile(path, dest)
            return
    raise FileNotFoundError(f"none of the packages {', '.join(dists)} is installed with {member}")


def _spec(name: str, filename: str, used_by: str, url: str, prefix: str | None) -> MetricWeight:
    fetch = f"{__name__}:fetch_{name.replace('-', '_')}"
    entry = register_weight(WeightFile(name=name, filename=filename, used_by=used_by, source=url, fetch=fetch))
    return MetricWeight(entry, prefix)


SPECS: dict[str, MetricWeight] = {
    s.entry.name: s
    for s in (
        _spec(
            "lpips-alex",
            "alexnet-owt-7be5be79.pth",
            "lpips (net alex)",
            "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            "7be5be79",
        ),
        _spec(
            "lpips-vgg",
            "vgg16-397923af.pth",
            "lpips (net vgg), dists",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            "397923af",
        ),
        _spec(
            "inception-fid",
            "inception-2015-12-05.pt",
            "fid, kid (clean-fid)",
            "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
            None,
        ),
        _spec(
            "inception-is",
            "weights-inception-2015-12-05-6726825d.pth",
            "is (torch-fidelity)",
            "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth",
            "6726825d",
        ),
        _spec(
            "resnet50",
            "resnet50-0676ba61.pth",
            "classification (torchvision ResNet-50, IMAGENET1K_V1)",
            "https://download.pytorch.org/models/resnet50-0676ba61.pth",
            "0676ba61",
        ),
        _spec(
            "niqe-pris-params",
            "niqe_pris_params.npz",
            "niqe (pristine natural-scene model of the LIVE images)",
            "the basicsr wheel on PyPI (`pip install --no-deps basicsr-fixed`): basicsr/metrics/niqe_pris_params.npz",
            "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
        ),
        _spec(
            "dists-alpha-beta",
            "dists_weights.pt",
            "dists (published alpha/beta)",
            "the DISTS-pytorch wheel on PyPI (`pip install --no-deps dists-pytorch`): DISTS_pytorch/weights.pt",
            "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218",
        ),
    )
}
# Files copied out of an installed wheel instead of downloaded: registry name -> (distributions, member).
FROM_PACKAGES = {
    "niqe-pris-params": (("basicsr-fixed", "basicsr"), "basicsr/metrics/niqe_pris_params.npz"),
    "dists-alpha-beta": (("DISTS-pytorch",), "DISTS_pytorch/weights.pt"),
}


def _fetch(name: str, dest: Path) -> None:
    spec = SPECS[name]
    _download(spec.entry.source, dest, spec.sha256_prefix)


def fetch_lpips_alex(dest: Path) -> None:
    """Download torchvision's AlexNet (LPIPS backbone)."""
    _fetch("lpips-alex", dest)


def fetch_lpips_vgg(dest: Path) -> None:
    """Download torchvision's VGG-16 (LPIPS backbone)."""
    _fetch("lpips-vgg", dest)


def fetch_inception_fid(dest: Path) -> None:
    """Download clean-fid's Inception torchscript (NVIDIA's translation of the 2015-12-05 TF graph)."""
    _fetch("inception-fid", dest)


def fetch_inception_is(dest: Path) -> None:
    """Download torch-fidelity's Inception weights (the same TF graph, as a state dict)."""
    _fetch("inception-is", dest)


def fetch_resnet50(dest: Path) -> None:
    """Download torchvision's ResNet-50 IMAGENET1K_V1 weights."""
    _fetch("resnet50", dest)


def fetch_niqe_pris_params(dest: Path) -> None:
    """Copy NIQE's pristine parameters from the installed basicsr(-fixed) wheel, without importing it."""
    _copy_from_package(*FROM_PACKAGES["niqe-pris-params"], dest)


def fetch_dists_alpha_beta(dest: Path) -> None:
    """Copy DISTS' published alpha/beta from the installed DISTS-pytorch wheel, without importing it."""
    _copy_from_package(*FROM_PACKAGES["dists-alpha-beta"], dest)


@dataclass(frozen=True)
class CheckedWeight:
    """A weights file found in the cache, and whether it is the official one."""

    path: Path
    standard: bool
    note: str  # empty for official weights; the NON-STANDARD warning otherwise


_VERDICTS: dict[tuple[str, int, int], str | None] = {}
# The weights files checked since `reset_used_weights()` (the start of a run): name -> content digest, for
# manifest.json, so runs whose metrics used different files are never compared (evalsuite.comparable).
_USED: dict[str, str] = {}
_DIGESTS: dict[tuple[str, int, int], str] = {}


def reset_used_weights() -> None:
    """Forget the weights recorded so far (called when a run starts)."""
    _USED.clear()


def used_weights() -> dict[str, str]:
    """{weights name: content digest} of every weights file checked since the last reset."""
    return dict(sorted(_USED.items()))


def _digest(name: str, path: Path, standard: bool) -> str:
    """The official sha256 prefix for a verified official file, else the file's sha256 (cached per file state)."""
    prefix = SPECS[name].sha256_prefix if name in SPECS else None
    if standard and prefix is not None:
        return f"sha256:{prefix}"
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = f"sha256:{sha256_file(path)[:16]}"
    return _DIGESTS[key]


def nonstandard_reason(name: str, path: Path) -> str | None:
    """Why `path` is not the official file for `name` (None when it is, or when no hash is published)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _VERDICTS:
        return _VERDICTS[key]
    spec = SPECS[name]
    reason: str | None = None
    if spec.sha256_prefix is not None:
        digest = sha256_file(path)
        if not digest.startswith(spec.sha256_prefix):
            reason = f"sha256 {digest[:12]}... does not start with the official prefix {spec.sha256_prefix}"
    elif path.suffix == ".pt":
        # No published hash: a torchscript made by write_random_weights carries a marker file.
        extra = {MARKER: ""}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
                torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        except Exception as exc:
            reason = f"not a loadable torchscript ({type(exc).__name__}: {exc})"
        else:
            what = extra[MARKER]
            if what:
                reason = f"made by evalsuite ({what.decode() if isinstance(what, bytes) else what})"
    _VERDICTS[key] = reason
    return reason


def allow_nonstandard(options: dict | None = None) -> bool:
    """Whether non-official weights may be used (env EVALSUITE_ALLOW_NONSTANDARD_WEIGHTS=1 or the option)."""
    return os.environ.get(ALLOW_ENV, "") == "1" or bool((options or {}).get("allow_nonstandard_weights"))


def checked_weight(name: str, metric: str, options: dict | None = None) -> CheckedWeight:
    """The weights file for `name`, fetched if allowed; refused (MissingWeightsError) when not official."""
    path = ensure_weight(name)
    reason = nonstandard_reason(name, path)
    if reason is None:
        _USED[name] = _digest(name, path, True)
        return CheckedWeight(path, True, "")
    if not allow_nonstandard(options):
        w = get_weight(name)
        raise MissingWeightsError(
            f"weights '{name}' at {path} are not the official {w.filename} ({reason}); a {metric} number from "
            f"other weights is never reported under that name. Replace the file with the official one "
            f"({w.source}), or set {ALLOW_ENV}=1 to compute a NON-STANDARD value"
        )
    note = f"NON-STANDARD weights {path.name} ({reason}): not comparable to published {metric}"
    _USED[name] = _digest(name, path, False)
    return CheckedWeight(path, False, note)


def write_random_weights(name: str, dest: Path, seed: int = 0, small: bool = False) -> Path:
    """Write a randomly initialized standard network under `name`'s file name (tests and benchmarks only).

    `small=True` (inception-fid only) writes a tiny convolutional stand-in with clean-fid's interface
    instead of the Inception architecture, for fast tests of the statistics and the plumbing.
    """
    torch.manual_seed(seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if small and name != "inception-fid":
        raise ValueError("small=True exists only for inception-fid")
    if small:
        trunk = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 5, stride=4),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(4),
            torch.nn.Flatten(),
            torch.nn.Linear(512, 2048),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            module = torch.jit.script(_CleanFidLike(trunk, torch.nn.Linear(2048, 1008)))
        _save_script(module, dest, "small random stand-in network, for tests")
    elif name in ("lpips-alex", "lpips-vgg", "resnet50"):
        import torchvision.models as tvm

        net = {"lpips-alex": tvm.alexnet, "lpips-vgg": tvm.vgg16, "resnet50": tvm.resnet50}[name](weights=None)
        torch.save(net.state_dict(), dest)
    elif name == "inception-is":
        torch.save(_random_fidelity_inception().state_dict(), dest)
    elif name == "inception-fid":
        _random_cleanfid_torchscript(dest)
    else:
        raise KeyError(f"no random-weights recipe for {name!r}; known: {', '.join(SPECS)}")
    return dest


def _random_fidelity_inception() -> torch.nn.Module:
    """torch-fidelity's InceptionV3 with PyTorch's default (random) initialization."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Random(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # keep the random initialization
            return None

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        net = _Random("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    # He initialization keeps the activations of the 94 random layers at a usable scale.
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return net


class _PoolFeatures(torch.nn.Module):
    """Inception trunk -> 2048-d pool features from an input already normalized to [-1, 1]."""

    def __init__(self, inception: torch.nn.Module) -> None:
        super().__init__()
        self.inception = inception

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.inception
        for layer in (
            m.Conv2d_1a_3x3,
            m.Conv2d_2a_3x3,
            m.Conv2d_2b_3x3,
            m.MaxPool_1,
            m.Conv2d_3b_1x1,
            m.Conv2d_4a_3x3,
            m.MaxPool_2,
            m.Mixed_5b,
            m.Mixed_5c,
            m.Mixed_5d,
            m.Mixed_6a,
            m.Mixed_6b,
            m.Mixed_6c,
            m.Mixed_6d,
            m.Mixed_6e,
            m.Mixed_7a,
            m.Mixed_7b,
            m.Mixed_7c,
            m.AvgPool,
        ):
            x = layer(x)
        return x.flatten(1)  # (B, 2048)


class _CleanFidLike(torch.nn.Module):
    """The interface of NVIDIA's Inception torchscript that clean-fid uses: `.layers`, forward(x, return_features)."""

    def __init__(self, layers: torch.nn.Module, fc: torch.nn.Module) -> None:
        super().__init__()
        self.layers = layers
        self.fc = fc

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        # x: (B,3,H,W) in [0,255] -> 299x299, then [-1,1] as the original graph does.
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        feats = self.layers((x - 128.0) / 128.0)
        return feats if return_features else torch.softmax(self.fc(feats), dim=1)


def _random_cleanfid_torchscript(dest: Path) -> None:
    """A random-init InceptionV3 trunk as a torchscript with clean-fid's interface, marked non-standard."""
    inception = _random_fidelity_inception().float().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        layers = torch.jit.trace(_PoolFeatures(inception), torch.zeros(1, 3, 299, 299), check_trace=False)
        module = torch.jit.script(_CleanFidLike(layers, inception.fc))
    _save_script(module, dest, "random initialization, for tests and benchmarks")


def _save_script(module: torch.jit.ScriptModule, dest: Path, what: str) -> None:
    """Save a torchscript with the non-standard marker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        torch.jit.save(module, str(dest), _extra_files={MARKER: what})
