"""SQLite results store: one row per command run, in ``runs/slimbench.db`` (WAL, versioned schema)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimbench.errors import SlimbenchError

SCHEMA_VERSION = 1
DB_NAME = "slimbench.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    command TEXT NOT NULL,
    status TEXT NOT NULL,
    started TEXT NOT NULL,
    finished TEXT,
    run_dir TEXT NOT NULL,
    model TEXT,
    config_hash TEXT,
    git_commit TEXT,
    config_json TEXT NOT NULL,
    metrics_json TEXT NOT NULL,
    wall_s REAL
);
CREATE INDEX IF NOT EXISTS runs_by_name ON runs(name);
"""


@dataclass
class RunRecord:
    id: int
    name: str
    command: str
    status: str
    started: str
    finished: str | None
    run_dir: str
    model: str | None
    config_hash: str | None
    git_commit: str | None
    config: dict[str, Any]
    metrics: dict[str, Any]
    wall_s: float | None


class ResultsStore:
    """A thin, safe wrapper: each call opens, writes in one transaction, and closes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn, conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SlimbenchError(
                    f"{self.path}: results store schema {version} is newer than this slimbench ({SCHEMA_VERSION})"
                )
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            raise SlimbenchError(f"{self.path}: not a usable results store ({exc})") from None
        return conn

    def record(self, *, name: str, command: str, status: str, started: str, finished: str | None, run_dir: str,
               model: str | None, config_hash: str | None, git_commit: str | None, config: dict[str, Any],
               metrics: dict[str, Any], wall_s: float | None) -> int:
        with closing(self._connect()) as conn, conn:
            cursor = conn.execute(
                "INSERT INTO runs (name, command, status, started, finished, run_dir, model, config_hash, "
                "git_commit, config_json, metrics_json, wall_s) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (name, command, status, started, finished, run_dir, model, config_hash, git_commit,
                 json.dumps(config, default=str), json.dumps(metrics, default=str), wall_s),
            )
            return int(cursor.lastrowid or 0)

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        query = "SELECT * FROM runs ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        with closing(self._connect()) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(query).fetchall()
        return [
            RunRecord(
                id=r["id"], name=r["name"], command=r["command"], status=r["status"], started=r["started"],
                finished=r["finished"], run_dir=r["run_dir"], model=r["model"], config_hash=r["config_hash"],
                git_commit=r["git_commit"], config=json.loads(r["config_json"]),
                metrics=json.loads(r["metrics_json"]), wall_s=r["wall_s"],
            )
            for r in rows
        ]
