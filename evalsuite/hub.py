"""`hf:ORG/REPO[/FILE][@REVISION]`: checkpoints and model folders from the Hugging Face Hub's cache.

One resolver for every method that takes a checkpoint or a folder (`sr3:`, `regression:`, `gan:`,
`spandrel:`, `diffusers:`). The cache is looked in first (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
huggingface_hub's default): a file found there is used without touching the network, so a run is the same
offline as online. A file not in the cache is downloaded, unless the Hub is unreachable or
`HF_HUB_OFFLINE=1`: then it fails at once, naming the repository, the file and the command that downloads
it. What was used is recorded: the repository, the commit it resolved to and the sha256 of the file(s).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from evalsuite.weights import sha256_file

PREFIX = "hf:"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_TRUE = ("1", "on", "yes", "true")
# Formats no folder method here reads (diffusers reads its sub-folders, not the original single-file `.ckpt`):
# a repository folder is fetched without them.
FOLDER_IGNORE = ("*.msgpack", "*.h5", "*.onnx", "*.onnx_data", "*.pb", "*.ot", "*.tflite", "*.mlmodel", "*.ckpt")


class HubError(FileNotFoundError):
    """An `hf:` reference that is malformed, or not in the cache and not downloadable here."""


@dataclass(frozen=True)
class HubRef:
    """A parsed `hf:ORG/REPO[/FILE][@REVISION]`."""

    repo_id: str  # ORG/REPO
    filename: str | None = None  # a path inside the repository; None: the whole repository (a folder)
    revision: str | None = None  # a branch, tag or commit; None: main

    def __str__(self) -> str:
        return (
            PREFIX
            + self.repo_id
            + (f"/{self.filename}" if self.filename else "")
            + (f"@{self.revision}" if self.revision else "")
        )

    def download_command(self) -> str:
        """The command that puts this file (or repository) in the cache."""
        parts = ["hf download", self.repo_id] + ([self.filename] if self.filename else [])
        if self.revision:
            parts.append(f"--revision {self.revision}")
        return " ".join(parts)


def is_hub_ref(arg: str | None) -> bool:
    """Whether a method argument is an `hf:` reference."""
    return bool(arg) and str(arg).startswith(PREFIX)


def parse_hub_ref(arg: str) -> HubRef:
    """'hf:org/repo/sub/model.safetensors@v1' -> HubRef('org/repo', 'sub/model.safetensors', 'v1')."""
    body = arg[len(PREFIX) :] if arg.startswith(PREFIX) else arg
    revision = None
    if "@" in body:
        body, revision = body.rsplit("@", 1)
        if not revision:
            raise HubError(f"{arg}: empty revision after '@' (write hf:ORG/REPO[/FILE][@REVISION])")
    parts = body.strip("/").split("/")
    repo_id = "/".join(parts[:2])
    if len(parts) < 2 or not _REPO.match(repo_id):
        raise HubError(f"{arg}: not a Hub reference; write hf:ORG/REPO[/FILE][@REVISION], e.g. hf:org/model/x4.pth")
    filename = "/".join(parts[2:]) or None
    return HubRef(repo_id, filename, revision)


def hub_cache_dir() -> Path:
    """The Hub cache folder, read from the environment at call time (HF_HUB_CACHE, HF_HOME/hub, default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def hub_offline() -> bool:
    """Whether HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for no network."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hub endpoint accepts a TCP connection (a quick check, so offline fails at once)."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # through a proxy a direct connection says nothing: let huggingface_hub try
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _hf() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.errors
    except ImportError as exc:
        raise HubError(
            "hf: references need huggingface_hub: pip install 'evalsuite[hub]' (or 'evalsuite[diffusers]')"
        ) from exc
    return huggingface_hub


def _missing(ref: HubRef, cache: Path, why: str) -> HubError:
    what = f"file {ref.filename!r} of repository {ref.repo_id}" if ref.filename else f"repository {ref.repo_id}"
    rev = f" at revision {ref.revision}" if ref.revision else ""
    return HubError(
        f"{ref}: {what}{rev} is not in the Hugging Face cache ({cache}) and {why}. Download it where the "
        f"network allows: `{ref.download_command()}` (or `huggingface-cli download ...` with the same arguments), "
        "or set HF_HUB_CACHE to a cache that holds it"
    )


def _fetch(ref: HubRef, cache: Path, local_only: bool) -> str:
    hf = _hf()
    if ref.filename:
        return hf.hf_hub_download(
            ref.repo_id, ref.filename, revision=ref.revision, cache_dir=cache, local_files_only=local_only
        )
    return hf.snapshot_download(
        ref.repo_id,
        revision=ref.revision,
        cache_dir=cache,
        local_files_only=local_only,
        ignore_patterns=list(FOLDER_IGNORE),
    )


def _commit_of(path: Path, ref: HubRef, cache: Path) -> str | None:
    """The commit a cached path belongs to: the folder under snapshots/ (the cache's layout)."""
    parts = path.parts
    if "snapshots" in parts:
        i = len(parts) - 1 - parts[::-1].index("snapshots")
        if i + 1 < len(parts):
            return parts[i + 1]
    return ref.revision if ref.revision and _COMMIT.match(ref.revision) else None


def resolve_hub_ref(arg: str) -> tuple[Path, dict[str, Any]]:
    """`hf:...` -> (local path in the cache, record for the manifest); HubError with the fix when unavailable.

    A FILE resolves to that file; no FILE to the repository's folder (a snapshot). The record holds the
    repository, file, requested revision, the commit it resolved to and the sha256 of each file.
    """
    ref = parse_hub_ref(arg)
    cache = hub_cache_dir()
    hf = _hf()
    errors = hf.errors
    not_local = (errors.LocalEntryNotFoundError, errors.EntryNotFoundError, FileNotFoundError)
    try:
        local = _fetch(ref, cache, local_only=True)  # the cache first: no network when it holds the file
    except not_local:
        if hub_offline():
            raise _missing(ref, cache, "HF_HUB_OFFLINE is set") from None
        if not _hub_reachable():
            raise _missing(ref, cache, "the Hub cannot be reached from here") from None
        try:
            local = _fetch(ref, cache, local_only=False)
        except (errors.RepositoryNotFoundError, errors.GatedRepoError) as exc:
            raise HubError(f"{ref}: repository {ref.repo_id} not found or not accessible ({exc})") from None
        except errors.RevisionNotFoundError:
            raise HubError(f"{ref}: repository {ref.repo_id} has no revision {ref.revision!r}") from None
        except errors.EntryNotFoundError:
            raise HubError(f"{ref}: repository {ref.repo_id} has no file {ref.filename!r}") from None
        except (errors.HfHubHTTPError, OSError) as exc:
            raise _missing(ref, cache, f"the download failed ({type(exc).__name__}: {exc})") from None
    path = Path(local)
    record: dict[str, Any] = {
        "repo": ref.repo_id,
        "file": ref.filename,
        "revision": ref.revision or "main",
        "commit": _commit_of(path, ref, cache),
    }
    if path.is_file():
        record["sha256"] = sha256_file(path)
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file())
        record["files_sha256"] = {p.relative_to(path).as_posix(): sha256_file(p) for p in files}
    return path, record


def cached_commit(arg: str) -> str | None:
    """The commit an `hf:` reference resolves to in the cache now (no network, no hashing), or None."""
    try:
        ref = parse_hub_ref(arg)
    except HubError:
        return None
    if ref.revision and _COMMIT.match(ref.revision):
        return ref.revision
    refs = hub_cache_dir() / f"models--{ref.repo_id.replace('/', '--')}" / "refs" / (ref.revision or "main")
    try:
        return refs.read_text().strip() or None
    except OSError:
        return None


def hub_label(arg: str) -> str:
    """A short name for an `hf:` reference: the file's stem (else the repository's name), then the revision."""
    ref = parse_hub_ref(arg)
    stem = (ref.filename or ref.repo_id).split("/")[-1]
    stem = re.sub(r"\.(safetensors|pth|pt|ckpt|bin)$", "", stem)
    return stem + (f"@{ref.revision[:12]}" if ref.revision else "")
