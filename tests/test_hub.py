"""`hf:ORG/REPO[/FILE][@REVISION]`: checkpoints from a Hugging Face cache the test lays out itself."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest
import torch
from test_sr3_method import random_sr3

from baselines.gan.rrdbnet import RRDBNet, RRDBNetConfig
from evalsuite.cache import method_key
from evalsuite.hub import HubError, cached_commit, parse_hub_ref, resolve_hub_ref
from evalsuite.methods import MethodContext, build_method, method_label

pytest.importorskip("huggingface_hub")

C1, C2 = "1" * 40, "2" * 40


def lay_out(cache: Path, repo: str, commit: str, files: dict[str, Path | bytes], ref: str | None = "main") -> Path:
    """The Hub cache's layout: models--ORG--REPO/snapshots/<commit>/FILE and refs/<ref> holding the commit."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snap = root / "snapshots" / commit
    for name, content in files.items():
        dest = snap / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, dest)
        else:
            dest.write_bytes(content)
    if ref:
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / ref).write_text(commit)
    return snap


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # A closed local port: "the Hub cannot be reached" is decided at once, without the real network.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    return cache


def test_references_parse_with_subfolders_and_revisions():
    assert parse_hub_ref("hf:org/repo") == parse_hub_ref("hf:org/repo/").__class__("org/repo")
    r = parse_hub_ref("hf:org/repo/sub/x4.safetensors@v1.0")
    assert (r.repo_id, r.filename, r.revision) == ("org/repo", "sub/x4.safetensors", "v1.0")
    assert parse_hub_ref(f"hf:org/repo@{C1}").revision == C1 and parse_hub_ref(f"hf:org/repo@{C1}").filename is None
    assert r.download_command() == "hf download org/repo sub/x4.safetensors --revision v1.0"
    for bad in ("hf:repo-only", "hf:org/repo@", "hf:/x"):
        with pytest.raises(HubError, match="hf:ORG/REPO"):
            parse_hub_ref(bad)
    assert method_label("sr3:hf:org/repo/model.safetensors") == "sr3-model"
    assert method_label(f"sr3:hf:org/repo/model.safetensors@{C2}") == "sr3-model_222222222222"
    assert method_label("folder:hf:org/x4-upscaler") == "folder-x4-upscaler"


def test_sr3_from_the_cache_records_commit_and_hash_and_follows_revision(tmp_path, hub_cache, monkeypatch):
    a = random_sr3(tmp_path / "a")
    torch.manual_seed(1)
    b = random_sr3(tmp_path / "b", image_size=32)  # another revision: another model
    lay_out(hub_cache, "org/sr3", C1, {"model.safetensors": a})
    lay_out(hub_cache, "org/sr3", C2, {"model.safetensors": b}, ref="v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # everything below comes from the cache alone

    m = build_method("sr3:hf:org/sr3/model.safetensors", MethodContext(2, options={"steps": 2}))
    assert m.hub_source["commit"] == C1 and m.hub_source["repo"] == "org/sr3"
    assert m.hub_source["sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    assert m.tile == 8 and m(torch.rand(1, 3, 8, 8), ["x"]).shape == (1, 3, 16, 16)

    for rev in (C2, "v2"):  # a commit hash and a tag both pick the other snapshot
        m2 = build_method(f"sr3:hf:org/sr3/model.safetensors@{rev}", MethodContext(2))
        assert m2.hub_source["commit"] == C2 and m2.tile == 16
        assert m2.hub_source["sha256"] == hashlib.sha256(b.read_bytes()).hexdigest()
    assert cached_commit("hf:org/sr3/model.safetensors") == C1 and cached_commit("hf:org/sr3@v2") == C2
    # Outputs cached for `main` are not reused once main moves to another commit.
    key = method_key("sr3:hf:org/sr3/model.safetensors", {}, 0, "x2", "prep")
    (hub_cache / "models--org--sr3" / "refs" / "main").write_text(C2)
    assert method_key("sr3:hf:org/sr3/model.safetensors", {}, 0, "x2", "prep") != key


@pytest.mark.parametrize("offline", [True, False])
def test_a_file_missing_from_the_cache_fails_at_once_with_the_download_command(hub_cache, monkeypatch, offline):
    lay_out(hub_cache, "org/sr3", C1, {"model.safetensors": b"x"})
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    for arg, command in [
        ("hf:org/sr3/ema.safetensors", "hf download org/sr3 ema.safetensors"),
        ("hf:org/none/x4.pth@v3", "hf download org/none x4.pth --revision v3"),
    ]:
        with pytest.raises(HubError) as err:
            build_method(f"gan:{arg}", MethodContext(4))
        msg = str(err.value)
        assert command in msg and str(hub_cache) in msg and arg.split("/")[1] in msg
        assert ("HF_HUB_OFFLINE" if offline else "cannot be reached") in msg
    assert time.monotonic() - t0 < 10  # no retries against an unreachable Hub


def test_spandrel_and_a_whole_repository(tmp_path, hub_cache, monkeypatch):
    torch.manual_seed(1)
    net = RRDBNet(RRDBNetConfig(scale=4, num_feat=16, num_block=1, num_grow_ch=32)).eval()
    torch.save({"params_ema": net.state_dict()}, tmp_path / "esrgan_small.pth")
    snap = lay_out(hub_cache, "org/esr", C1, {"esrgan_small.pth": tmp_path / "esrgan_small.pth", "README.md": b"hi"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = build_method("spandrel:hf:org/esr/esrgan_small.pth", MethodContext(4))
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(m(x), net(x).clamp(0, 1), rtol=1e-5, atol=1e-5)
    # A whole repository resolves to its folder: fine for folder methods; a one-file method lists the files.
    path, record = resolve_hub_ref("hf:org/esr")
    assert path == snap and record["commit"] == C1 and set(record["files_sha256"]) == {"esrgan_small.pth", "README.md"}
    with pytest.raises(HubError, match="needs it named.*README.md, esrgan_small.pth"):
        build_method("spandrel:hf:org/esr", MethodContext(4))


def test_the_report_shows_an_hf_record_in_one_line():
    from reports.html import hub_setting

    file_rec = {"repo": "org/sr3", "file": "m.safetensors", "revision": "main", "commit": C1, "sha256": "ab" * 32}
    assert hub_setting(file_rec) == f"org/sr3/m.safetensors @ {C1[:12]} (sha256 {'ab' * 8})"
    folder_rec = {"repo": "org/ldm", "file": None, "commit": C2, "files_sha256": {"a": "0", "b": "1"}}
    assert hub_setting(folder_rec) == f"org/ldm @ {C2[:12]} (2 files hashed)"
