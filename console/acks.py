"""Acknowledgements of alerts, keyed by ``alert_id``: one small SQLite table in the workspace.

Acknowledging is idempotent: the first acknowledgement of an alert is kept (who, when, note), later
ones change nothing. The console's only write.
"""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable

from core.times import isoformat_z

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ack (
    alert_id TEXT PRIMARY KEY, acked_by TEXT NOT NULL, acked_at TEXT NOT NULL, note TEXT NOT NULL DEFAULT '')
"""
MAX_TEXT = 200


@dataclass(frozen=True)
class Ack:
    alert_id: str
    acked_by: str
    acked_at: str
    note: str


class AckStore:
    def __init__(self, path: str | Path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)

    def acknowledge(self, alert_id: str, by: str, at: datetime, note: str = "") -> bool:
        """True when this call recorded the acknowledgement, False when it already existed."""
        if not alert_id or len(alert_id) > 64:
            raise ValueError(f"alert_id: expected 1..64 characters, got {len(alert_id)}")
        by, note = by.strip()[:MAX_TEXT] or "console", note.strip()[:MAX_TEXT]
        with self._lock:
            cur = self._db.execute("INSERT OR IGNORE INTO ack VALUES (?, ?, ?, ?)",
                                   (alert_id, by, isoformat_z(at), note))
            return cur.rowcount == 1

    def get(self, alert_ids: Iterable[str]) -> dict[str, Ack]:
        ids = list(alert_ids)
        out: dict[str, Ack] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                part = ids[start:start + 500]
                marks = ",".join("?" * len(part))
                for row in self._db.execute(f"SELECT * FROM ack WHERE alert_id IN ({marks})", part):
                    out[row[0]] = Ack(*row)
        return out

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM ack").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
