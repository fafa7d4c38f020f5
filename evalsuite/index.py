"""The results index: every finished run registers itself; list, show, remove, and leaderboards of comparable runs.

SQLite by default at $EVALSUITE_HOME/index.sqlite ($EVALSUITE_HOME defaults to ~/.evalsuite); any SQLAlchemy
URL in $EVALSUITE_INDEX_URL (or `--index URL`), e.g. postgresql+psycopg://... for a team. Set
EVALSUITE_INDEX=off to stop runs registering themselves. The index keeps what a run folder said when it
was registered (its summary and the settings that decide comparability, `evalsuite.comparable`) and the
sha256 of its manifest.json: a folder that was moved, deleted or overwritten since is reported as such,
never silently kept in a leaderboard.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from evalsuite.comparable import RunInfo
from evalsuite.numbers import finite
from evalsuite.results import TEXT_COLUMNS, metric_columns

HOME_ENV = "EVALSUITE_HOME"  # the folder of the default SQLite index (default ~/.evalsuite)
URL_ENV = "EVALSUITE_INDEX_URL"  # any SQLAlchemy URL; overrides the default SQLite file
ENABLE_ENV = "EVALSUITE_INDEX"  # off/0/false/no: runs do not register themselves
OK, MISSING, CHANGED = "ok", "missing", "changed"
_ENGINES: dict[str, Any] = {}


def home_dir() -> Path:
    """$EVALSUITE_HOME, else ~/.evalsuite (not created here)."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".evalsuite").expanduser()


def index_url(url: str | None = None) -> str:
    """The index's SQLAlchemy URL: `url`, else $EVALSUITE_INDEX_URL, else sqlite:///$EVALSUITE_HOME/index.sqlite."""
    url = url or os.environ.get(URL_ENV)
    if url:
        return url if "://" in url else f"sqlite:///{Path(url).expanduser().resolve()}"
    return f"sqlite:///{home_dir() / 'index.sqlite'}"


def index_enabled() -> bool:
    """Whether finished runs register themselves ($EVALSUITE_INDEX is not off/0/false/no)."""
    return os.environ.get(ENABLE_ENV, "on").strip().lower() not in ("off", "0", "false", "no")


def _tables():
    import sqlalchemy as sa

    md = sa.MetaData()
    runs = sa.Table(
        "runs", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_dir", sa.String(1024), nullable=False, unique=True),
        sa.Column("name", sa.String(256)),
        sa.Column("data", sa.String(1024)),  # --data as given (set name or folder)
        sa.Column("data_dir", sa.String(1024)),  # the folder it resolved to
        sa.Column("task", sa.String(128)),
        sa.Column("scale", sa.Integer),
        sa.Column("protocol", sa.String(64)),
        sa.Column("methods", sa.Text),
        sa.Column("n_images", sa.Integer),
        sa.Column("identity", sa.Text),  # JSON of RunInfo.identity()
        sa.Column("identity_key", sa.String(32)),
        sa.Column("data_key", sa.String(32)),
        sa.Column("metric_weights", sa.Text),  # JSON
        sa.Column("metric_versions", sa.Text),  # JSON
        sa.Column("manifest_sha256", sa.String(64)),
        sa.Column("started", sa.String(32)),
        sa.Column("registered", sa.DateTime(timezone=True)),
    )
    results = sa.Table(
        "results", md,
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("method", sa.String(512), primary_key=True),
        sa.Column("metric", sa.String(128), primary_key=True),
        sa.Column("value", sa.Float),
        sa.Column("ci_low", sa.Float),
        sa.Column("ci_high", sa.Float),
        sa.Column("n_images", sa.Integer),
    )
    return md, runs, results


_MD, RUNS, RESULTS = _tables()


def _engine(url: str):
    """One engine per URL per process; SQLite waits for a busy writer, the folder of its file is created."""
    import sqlalchemy as sa

    if url not in _ENGINES:
        u = sa.engine.make_url(url)
        if u.get_backend_name() == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(u, connect_args={"timeout": 60})
        else:
            engine = sa.create_engine(u, pool_pre_ping=True)
        _MD.create_all(engine)
        _ENGINES[url] = engine
    return _ENGINES[url]


def manifest_sha256(run_dir: Path) -> str | None:
    """The sha256 of run_dir/manifest.json, or None when it is gone."""
    try:
        return hashlib.sha256((run_dir / "manifest.json").read_bytes()).hexdigest()
    except OSError:
        return None


@dataclass(frozen=True)
class Registered:
    """The outcome of registering a run: its id, and where it was registered before when it moved."""

    id: int
    moved_from: str | None = None


class RunIndex:
    """The results index at one SQLAlchemy URL."""

    def __init__(self, url: str | None = None) -> None:
        self.url = index_url(url)
        self.engine = _engine(self.url)

    def close(self) -> None:
        """Close the pooled connections (the next RunIndex at this URL opens new ones)."""
        _ENGINES.pop(self.url, None)
        self.engine.dispose()

    # ------------------------------------------------------------------ writing
    def register(self, run_dir: str | Path) -> Registered:
        """Add or update a finished run folder (its summary and comparability settings)."""
        import sqlalchemy as sa

        run_dir = Path(run_dir).resolve()
        info = RunInfo.load(run_dir)
        summary = pd.read_csv(run_dir / "summary.csv", dtype=TEXT_COLUMNS)
        digest = manifest_sha256(run_dir)
        row = {
            "run_dir": str(run_dir),
            "name": info.spec.get("name") or run_dir.name,
            "data": info.data,
            "data_dir": str(Path(str(info.manifest.get("data", ""))).resolve()),
            "task": info.task.get("name"),
            "scale": info.scale,
            "protocol": info.protocol_name,
            "methods": ",".join(str(m) for m in summary["method"]),
            "n_images": int(info.manifest.get("n_images") or len(info.image_hashes)),
            "identity": json.dumps(info.identity(), sort_keys=True),
            "identity_key": info.identity_key(),
            "data_key": info.data_key,
            "metric_weights": json.dumps(info.metric_weights, sort_keys=True),
            "metric_versions": json.dumps(info.metric_versions, sort_keys=True),
            "manifest_sha256": digest,
            "started": str(info.manifest.get("started", "")),
            "registered": datetime.now(timezone.utc),
        }
        cols = metric_columns(summary)
        moved_from = None
        with self.engine.begin() as conn:
            old = conn.execute(sa.select(RUNS.c.id).where(RUNS.c.run_dir == str(run_dir))).scalar()
            if old is None:
                # The same manifest registered at a path that no longer holds it: the folder was moved here.
                for rid, path in conn.execute(
                    sa.select(RUNS.c.id, RUNS.c.run_dir).where(RUNS.c.manifest_sha256 == digest)
                ):
                    if manifest_sha256(Path(path)) != digest:
                        old, moved_from = rid, path
                        break
            if old is None:
                rid = conn.execute(sa.insert(RUNS).values(**row)).inserted_primary_key[0]
            else:
                rid = old
                conn.execute(sa.update(RUNS).where(RUNS.c.id == rid).values(**row))
                conn.execute(sa.delete(RESULTS).where(RESULTS.c.run_id == rid))
            rows = [
                {"run_id": rid, "method": str(r["method"]), "metric": c, "value": finite(r[c]),
                 "ci_low": finite(r.get(f"{c}_ci_low")), "ci_high": finite(r.get(f"{c}_ci_high")),
                 "n_images": int(r["n_images"]) if finite(r["n_images"]) is not None else None}
                for _, r in summary.iterrows() for c in cols
            ]
            if rows:
                conn.execute(sa.insert(RESULTS), rows)
        return Registered(int(rid), moved_from)

    def remove(self, ids: list[int]) -> int:
        """Forget runs by id (their folders are not touched); the number removed."""
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            conn.execute(sa.delete(RESULTS).where(RESULTS.c.run_id.in_(ids)))
            return conn.execute(sa.delete(RUNS).where(RUNS.c.id.in_(ids))).rowcount

    # ------------------------------------------------------------------ reading
    def runs(self) -> pd.DataFrame:
        """Every registered run with its `status`: ok, missing (folder moved or deleted) or changed (rerun)."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            df = pd.read_sql(sa.select(RUNS).order_by(RUNS.c.id), conn)
        df["status"] = [status(Path(p), d) for p, d in zip(df["run_dir"], df["manifest_sha256"])]
        return df

    def find(self, key: str | int) -> pd.Series:
        """One registered run by id or by folder (a clear error naming what is registered otherwise)."""
        df = self.runs()
        if str(key).isdigit() and int(key) in set(df["id"]):
            return df[df["id"] == int(key)].iloc[0]
        hit = df[df["run_dir"] == str(Path(str(key)).resolve())]
        if hit.empty:
            raise ValueError(f"no registered run {key!r} in the index {self.url}; `evalsuite runs list` shows them")
        return hit.iloc[0]

    def results(self, run_id: int) -> pd.DataFrame:
        """The registered summary of one run: method, metric, value, ci_low, ci_high, n_images."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            q = sa.select(RESULTS).where(RESULTS.c.run_id == int(run_id))
            return pd.read_sql(q, conn).drop(columns=["run_id"])

    def leaderboard(self, metric: str, data: str | None = None, scale: int | None = None,
                    protocol: str | None = None) -> Leaderboard:
        """Methods ranked on `metric` over the matching runs, one board per group of comparable runs."""
        import sqlalchemy as sa

        from evalsuite.metrics.base import column_info

        runs = self.runs()
        if data is not None:
            folder = str(Path(data).expanduser().resolve())
            runs = runs[(runs["data"] == data) | (runs["data_dir"] == folder)]
        if scale is not None:
            runs = runs[runs["scale"] == scale]
        if protocol is not None:
            runs = runs[runs["protocol"] == protocol]
        stale = runs[runs["status"] != OK]
        runs = runs[runs["status"] == OK]
        with self.engine.connect() as conn:
            q = sa.select(RESULTS).where(RESULTS.c.metric == metric, RESULTS.c.run_id.in_([int(i) for i in runs["id"]]))
            res = pd.read_sql(q, conn)
        res = res[res["value"].notna() & (res["method"] != "reference (HR)")]
        higher = column_info(metric).higher_is_better
        boards = []
        for group in comparable_groups(runs[runs["id"].isin(res["run_id"])]):
            ids = list(group["id"])
            rows = res[res["run_id"].isin(ids)].merge(
                group[["id", "run_dir", "name", "started"]], left_on="run_id", right_on="id"
            ).drop(columns=["id"])
            if higher is not None:
                rows = rows.sort_values("value", ascending=not higher, kind="stable")
            rows.insert(0, "rank", range(1, len(rows) + 1))
            first = group.iloc[0]
            boards.append(Board(json.loads(first["identity"]), int(first["n_images"]), str(first["data_key"]), rows))
        return Leaderboard(metric, higher, boards, stale[["id", "run_dir", "status"]])


@dataclass(frozen=True)
class Board:
    """A leaderboard over runs that are comparable with one another."""

    identity: dict[str, str]
    n_images: int
    data_key: str  # the set of images, by content
    rows: pd.DataFrame  # rank, method, metric, value, ci_low, ci_high, n_images, run_id, run_dir, name, started


@dataclass(frozen=True)
class Leaderboard:
    """Boards of comparable runs, and the matching runs left out because their folder moved or changed."""

    metric: str
    higher_is_better: bool | None
    boards: list[Board]
    stale: pd.DataFrame


def status(run_dir: Path, digest: str | None) -> str:
    """ok, missing (the folder or its manifest.json is gone: moved or deleted) or changed (manifest differs)."""
    now = manifest_sha256(run_dir)
    if now is None:
        return MISSING
    return OK if now == digest else CHANGED


def _consistent(a: dict[str, str], b: dict[str, str]) -> bool:
    return all(a[k] == b[k] for k in set(a) & set(b))


def comparable_groups(runs: pd.DataFrame) -> list[pd.DataFrame]:
    """Runs split into groups whose numbers are comparable: same identity and image set, no conflicting
    metric weights or metric versions (largest group first)."""
    groups: list[tuple[list[int], dict[str, str], dict[str, str]]] = []
    for key, part in runs.groupby(["identity_key", "data_key"], sort=False):
        del key
        local: list[tuple[list[int], dict[str, str], dict[str, str]]] = []
        for idx, r in part.iterrows():
            w, v = json.loads(r["metric_weights"] or "{}"), json.loads(r["metric_versions"] or "{}")
            for members, gw, gv in local:
                if _consistent(w, gw) and _consistent(v, gv):
                    members.append(idx)
                    gw.update(w)
                    gv.update(v)
                    break
            else:
                local.append(([idx], dict(w), dict(v)))
        groups += local
    groups.sort(key=lambda g: -len(g[0]))
    return [runs.loc[g[0]] for g in groups]


def register_hook(run_dir: str | Path) -> None:
    """The post-run hook (evalsuite.runner): register a finished run, unless $EVALSUITE_INDEX is off."""
    if index_enabled():
        RunIndex().register(run_dir)
