"""FID, KID and IS: the mathematics against direct computations, and the weights -> features -> number path."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from evalsuite.metrics.base import MetricContext
from evalsuite.metrics.distribution import (
    FID,
    KID,
    GaussianStats,
    InceptionScore,
    frechet_distance,
    frechet_distance_from_features,
    inception_score,
    kernel_distance,
)
from evalsuite.metrics.weights import ALLOW_ENV, SPECS, write_random_weights
from evalsuite.weights import MissingWeightsError


def _images(n: int, seed: int, size: int = 64) -> torch.Tensor:
    """n smooth random RGB images (B,3,size,size) in [0,1], 8-bit levels."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    return torch.round(x * 255) / 255


def _write_hr(run_dir: Path, ids: list[str], hr: torch.Tensor) -> None:
    (run_dir / "hr").mkdir(parents=True, exist_ok=True)
    for i, x in zip(ids, hr, strict=True):
        arr = (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(run_dir / "hr" / f"{i}.png")


@pytest.fixture()
def small_inception(tmp_path_factory, monkeypatch) -> Path:
    """A small clean-fid-compatible network saved as inception-2015-12-05.pt in a temporary weights folder."""
    folder = tmp_path_factory.mktemp("weights")
    write_random_weights("inception-fid", folder / SPECS["inception-fid"].entry.filename, small=True)
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(folder))
    monkeypatch.setenv("EVALSUITE_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv(ALLOW_ENV, "1")
    return folder


def test_frechet_distance_matches_direct_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 16))
    b = rng.normal(loc=0.3, scale=1.5, size=(150, 16)) @ rng.normal(size=(16, 16)) * 0.3
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    # ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), straight from scipy.
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(direct, rel=1e-8)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize("n1,n2", [(5, 7), (40, 60)])  # fewer samples than dimensions, and more
def test_frechet_distance_from_features_matches_direct_scipy(n1, n2):
    rng = np.random.default_rng(n1)
    a = rng.normal(size=(n1, 16))
    b = rng.normal(loc=0.2, size=(n2, 16)) @ rng.normal(size=(16, 16)) * 0.5
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    direct = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance_from_features(a, b) == pytest.approx(direct, rel=1e-7)
    assert frechet_distance_from_features(a, a) == pytest.approx(0.0, abs=1e-9)


def test_streamed_statistics_equal_numpy_mean_and_cov():
    rng = np.random.default_rng(1)
    feats = rng.normal(loc=2.0, size=(37, 2048))
    stats = GaussianStats()
    for k in range(0, 37, 8):  # uneven batches
        stats.add(torch.from_numpy(feats[k : k + 8]))
    mu, cov = stats.mean_cov()
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(feats, rowvar=False), atol=1e-10)


def test_kid_unbiased_estimator_matches_hand_computation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(12, 8))
    y = rng.normal(loc=0.5, size=(12, 8))
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1.0) ** 3

    m = len(x)
    # Unbiased MMD^2: mean over i != j of k(x_i,x_j) + k(y_i,y_j), minus twice the mean of k(x_i,y_j).
    same = sum(k(x[i], x[j]) + k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    cross = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    hand = same - 2 * cross
    # One subset of all samples: the estimator does not depend on the order the subset is drawn in.
    assert kernel_distance(x, y, seed=0, num_subsets=1) == pytest.approx(hand, rel=1e-10)
    assert kernel_distance(x, x, seed=0, num_subsets=1) < 0.05 * abs(hand)


def test_kid_subsets_are_seeded_and_leave_numpy_state_alone():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = kernel_distance(x, y, seed=5, num_subsets=10, max_subset_size=10)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert kernel_distance(x, y, seed=5, num_subsets=10, max_subset_size=10) == a
    assert kernel_distance(x, y, seed=6, num_subsets=10, max_subset_size=10) != a


def test_inception_score_on_constructed_class_probabilities():
    classes = 8
    onehot = np.eye(1008)[np.arange(160) % classes] * 60.0  # confident, spread evenly over 8 classes
    mean, std, splits = inception_score(onehot)
    assert splits == 1  # under 200 images: one split, exactly exp(H(marginal)) = 8
    assert mean == pytest.approx(classes, rel=1e-9)
    # 400 images: 4 shuffled splits, each close to (and at most) 8.
    mean4, std4, splits4 = inception_score(np.eye(1008)[np.arange(400) % classes] * 60.0)
    assert splits4 == 4 and 7.0 < mean4 <= 8.0 + 1e-9 and std4 > 0
    # One class for every image: the marginal equals each prediction, IS = exp(0) = 1.
    assert inception_score(np.tile(onehot[:1], (400, 1)))[0] == pytest.approx(1.0, abs=1e-9)
    # Uniform predictions carry no information either.
    assert inception_score(np.zeros((300, 1008)))[0] == pytest.approx(1.0, abs=1e-9)
    # Two classes with 75/25 mass: exp(H(marginal)) = exp(-(0.75 ln 0.75 + 0.25 ln 0.25)).
    two = np.eye(1008)[np.r_[np.zeros(150, int), np.ones(50, int)]] * 60.0
    assert inception_score(two)[0] == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))), rel=1e-6)


def test_fid_of_a_set_with_itself_is_zero_with_a_reference_folder(small_inception, tmp_path):
    # Each FID costs a 2048x2048 matrix square root: this file computes as few as it can.
    x = _images(12, seed=0)
    ids = [f"i{j:02d}" for j in range(12)]
    _write_hr(tmp_path / "ref", ids, x)
    ctx = MetricContext(torch.device("cpu"), 4, options={"fid_ref": str(tmp_path / "ref" / "hr")})
    fid = FID(ctx)
    for k in range(0, 12, 5):  # uneven batches
        fid.update(x[k : k + 5], x[k : k + 5], x[k : k + 5], ids[k : k + 5])
    value = fid.compute()["fid"]
    assert value.value == pytest.approx(0.0, abs=1e-6)
    assert "12 images vs 12 reference (folder" in value.note and "WARNING" in value.note
    assert "NON-STANDARD" in value.note


def test_streamed_features_equal_clean_fid_folder_features(small_inception, tmp_path):
    from cleanfid.fid import get_folder_features

    x = _images(6, seed=4, size=96)
    ids = [f"im{k}" for k in range(6)]
    _write_hr(tmp_path, ids, x)
    fid = FID(MetricContext(device=torch.device("cpu"), scale=4, run_dir=tmp_path))
    ours = fid.extractor(x).numpy()
    theirs = get_folder_features(str(tmp_path / "hr"), model=fid.extractor.model, num_workers=0, batch_size=4,
                                 device=torch.device("cpu"), mode="clean", verbose=False)
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_fid_and_kid_against_run_hr_share_one_cached_reference(small_inception, tmp_path):
    from evalsuite.metrics.distribution import load_stats_file
    from evalsuite.paths import cache_dir

    hr = _images(10, seed=5)
    ids = [f"im{k:02d}" for k in range(10)]
    _write_hr(tmp_path, ids, hr)
    ctx = MetricContext(device=torch.device("cpu"), scale=4, run_dir=tmp_path, options={"seed": 0})
    sr = torch.nn.functional.avg_pool2d(hr, 3, stride=1, padding=1)
    fid, kid = FID(ctx), KID(ctx)
    for m in (fid, kid):
        m.update(sr[:4], hr[:4], hr[:4], ids[:4])
        m.update(sr[4:], hr[4:], hr[4:], ids[4:])
    f, k = fid.compute()["fid"], kid.compute()["kid"]
    assert f.value > 1e-4
    files = list(cache_dir("fid_stats").glob("*.npz"))
    assert len(files) == 1  # FID computed the reference, KID reused it
    assert "cached statistics" in k.note and "10 images vs 10 reference" in k.note
    # The cached reference and the streamed statistics are numpy's mean/cov of the same features.
    feats_sr, feats_hr = fid.extractor(sr).numpy(), fid.extractor(hr).numpy()
    ref = load_stats_file(files[0])
    np.testing.assert_allclose(ref.mu, feats_hr.mean(0), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(ref.sigma, np.cov(feats_hr, rowvar=False), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(ref.feats, feats_hr, rtol=1e-6)
    mu, sigma = fid.stats.mean_cov()
    np.testing.assert_allclose(sigma, np.cov(feats_sr, rowvar=False), rtol=1e-5, atol=1e-8)
    assert k.value == pytest.approx(kernel_distance(feats_sr, feats_hr, seed=0), rel=1e-5)
    # A statistics file (mu/sigma only) is a valid FID reference, but KID says it needs features.
    np.savez(tmp_path / "ref.npz", mu=ref.mu, sigma=ref.sigma)
    kid2 = KID(MetricContext(torch.device("cpu"), 4, options={"fid_ref": str(tmp_path / "ref.npz")}))
    kid2.update(sr, hr, hr, ids)
    out = kid2.compute()["kid"]
    assert out.value is None and "only mu/sigma" in out.note
    np.savez(tmp_path / "bad.npz", mean=ref.mu)
    with pytest.raises(ValueError, match="needs 'mu' and 'sigma'"):
        load_stats_file(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="fid_ref"):
        FID(MetricContext(torch.device("cpu"), 4, options={"fid_ref": str(tmp_path / "nope")}))


def test_kid_against_streamed_hr_keeps_only_features(small_inception):
    x, y = _images(6, seed=1), _images(6, seed=2)
    ids = [str(k) for k in range(6)]
    kid = KID(MetricContext(torch.device("cpu"), 4))
    assert kid.hr_stats is None  # KID never uses the reference's covariance: none is accumulated
    kid.update(x[:4], y[:4], y[:4], ids[:4])
    kid.update(x[4:], y[4:], y[4:], ids[4:])
    value = kid.compute()["kid"]
    expected = kernel_distance(
        kid.extractor(x).double().numpy(), kid.extractor(y).double().numpy(), 0
    )
    assert value.value == pytest.approx(expected, rel=1e-5, abs=1e-9)
    assert "6 images vs 6 reference (HR images of the batches" in value.note


def test_missing_and_nonstandard_weights_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(tmp_path))
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setattr("evalsuite.metrics.weights._download", _offline)
    ctx = MetricContext(torch.device("cpu"), 4)
    with pytest.raises(MissingWeightsError, match=r"inception-2015-12-05\.pt") as err:
        FID(ctx)
    assert str(tmp_path) in str(err.value) and "EVALSUITE_WEIGHTS" in str(err.value)
    write_random_weights("inception-fid", tmp_path / "inception-2015-12-05.pt", small=True)
    with pytest.raises(MissingWeightsError, match="not the official"):
        KID(ctx)
    # Explicitly allowed: computed, and marked.
    allowed = MetricContext(torch.device("cpu"), 4, options={"allow_nonstandard_weights": True})
    assert "NON-STANDARD" in FID(allowed).weight.note


def _offline(url: str, dest: Path, prefix: str | None) -> None:
    raise OSError("network unreachable (test)")


def test_inception_score_full_path_with_random_standard_network(tmp_path, monkeypatch):
    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(tmp_path))
    monkeypatch.setenv(ALLOW_ENV, "1")
    write_random_weights("inception-is", tmp_path / SPECS["inception-is"].entry.filename)
    metric = InceptionScore(MetricContext(torch.device("cpu"), 4))
    x = _images(4, seed=8)
    metric.update(x, x, x, ["a", "b", "c", "d"])
    value = metric.compute()["is"]
    assert value.value is not None and 1.0 <= value.value <= 1008.0
    # The number is torch-fidelity's IS of this network's logits of the images.
    assert value.value == pytest.approx(inception_score(metric.extractor(x).float().numpy())[0], rel=1e-6)
    assert "4 images" in value.note and "NON-STANDARD" in value.note and "sha256" in value.note
    # The torch-fidelity network is loaded from the file: its weights are the saved ones.
    saved = torch.load(tmp_path / SPECS["inception-is"].entry.filename, weights_only=True)
    torch.testing.assert_close(metric.extractor.model.fc.weight, saved["fc.weight"])


@pytest.mark.slow
def test_fid_with_random_inception_architecture_and_both_distance_paths(tmp_path, monkeypatch):
    from cleanfid.fid import fid_from_feats

    monkeypatch.setenv("EVALSUITE_WEIGHTS", str(tmp_path))
    monkeypatch.setenv(ALLOW_ENV, "1")
    write_random_weights("inception-fid", tmp_path / "inception-2015-12-05.pt")
    ctx = MetricContext(torch.device("cpu"), 4)
    x = _images(6, seed=9)
    fid = FID(ctx)
    fid.update(x, x, x, [str(k) for k in range(6)])
    assert fid.compute()["fid"].value == pytest.approx(0.0, abs=1e-4)
    # compute() sums over ranks into new objects: asking again gives the same value and the same counts.
    assert fid.compute()["fid"].value == pytest.approx(0.0, abs=1e-4)
    assert int(fid.stats.n) == 6 and int(fid.hr_stats.n) == 6
    # The few-images path equals clean-fid's 2048 x 2048 sqrtm on the same features.
    f1, f2 = fid.extractor(x).numpy(), fid.extractor(x.flip(-1) * 0.8).numpy()
    assert frechet_distance_from_features(f1, f2) == pytest.approx(fid_from_feats(f1, f2), rel=1e-4)


def test_metric_warnings_go_through_the_run_log_never_print(small_inception, capsys, caplog):
    # KID of 6 images with non-standard weights: its note carries two warnings (few images, NON-STANDARD).
    x, y = _images(6, seed=1), _images(6, seed=2)
    ids = [str(k) for k in range(6)]
    said: list[str] = []
    kid = KID(MetricContext(torch.device("cpu"), 4, log=said.append))
    kid.update(x, y, y, ids)
    note = kid.compute()["kid"].note
    # Each warning of the note reached the context's log (the runner's logger), and nothing was printed.
    assert len(said) == 2 and all(m.startswith("warning: kid: ") for m in said)
    warnings = [m.removeprefix("warning: kid: ") for m in said]
    assert "WARNING: KID from 6 images" in warnings[0] and "NON-STANDARD" in warnings[1]
    assert note.endswith("; " + "; ".join(warnings))
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == ""
    # A context built without a log hands the same warnings to the `evalsuite.metrics` logger.
    with caplog.at_level(logging.WARNING, logger="evalsuite.metrics"):
        kid = KID(MetricContext(torch.device("cpu"), 4))
        kid.update(x, y, y, ids)
        kid.compute()
    assert [r.getMessage() for r in caplog.records if r.name == "evalsuite.metrics"] == said
    assert capsys.readouterr().out == ""


def test_no_metric_module_calls_print():
    # Warnings belong in MetricContext.log; a print would bypass the run's logger (and print on every rank).
    import evalsuite.metrics as pkg

    calls = []
    for path in sorted(Path(pkg.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                calls.append(f"{path.name}:{node.lineno}")
    assert calls == []
