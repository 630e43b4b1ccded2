"""The serving side's durable state, one SQLite file: cooldowns, the alert outbox, pending scores.

* ``cooldown(customer_id, alert_type, last_as_of_us)``: the event time of the last alert
  emitted per customer and type. A new alert is suppressed when its as-of time lies within
  ``cooldown_us`` of that (either side: replays and late triggers are suppressed too).
  Event time only; the wall clock never enters.
* ``outbox(alert_id, payload, as_of_us, attempts, last_error, delivered)``: every emitted
  alert is written here in the same transaction that updates its cooldown, *before* any
  publish attempt. Delivered alerts are marked; undelivered ones are redelivered later
  (``undelivered()``). So an alert is never lost, and a crash between the two steps gives
  at-least-once delivery with a stable ``alert_id`` consumers can dedupe on.
* ``pending(customer_id, as_of_us, attempts, last_error, state)``: scoring requests not yet
  served: every trigger the scoring hook records (``add_triggers``, attempts 0) and every request
  whose online lookup or endpoint call failed (``add_pending``); removed only once scored.
* ``rank_threshold(alert_type, value, as_of_us)``: a rank rule's cut from the latest daily batch
  (e.g. the 95th percentile of churn risk), which stream-triggered scoring applies until the next.

One connection guarded by a lock (the hook and the batch job may share a service).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from core.times import from_us, to_us

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cooldown (
    customer_id TEXT NOT NULL, alert_type TEXT NOT NULL, last_as_of_us INTEGER NOT NULL,
    PRIMARY KEY (customer_id, alert_type));
CREATE TABLE IF NOT EXISTS outbox (
    alert_id TEXT PRIMARY KEY, payload TEXT NOT NULL, as_of_us INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, delivered INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_undelivered ON outbox (delivered, as_of_us);
CREATE TABLE IF NOT EXISTS pending (
    customer_id TEXT NOT NULL, as_of_us INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, state TEXT NOT NULL DEFAULT 'retry',
    PRIMARY KEY (customer_id, as_of_us));
CREATE TABLE IF NOT EXISTS rank_threshold (
    alert_type TEXT PRIMARY KEY, value REAL NOT NULL, as_of_us INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Pending:
    customer_id: str
    as_of: datetime
    attempts: int
    last_error: str | None
    state: str


class ServingState:
    def __init__(self, path: str | Path = ":memory:"):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- cooldown + outbox ------------------------------------------------------------------
    def in_cooldown(self, customer_id: str, alert_type: str, as_of: datetime, cooldown_us: int) -> bool:
        with self._lock:
            row = self._db.execute("SELECT last_as_of_us FROM cooldown WHERE customer_id=? AND alert_type=?",
                                   (customer_id, alert_type)).fetchone()
        return row is not None and abs(to_us(as_of) - row[0]) < cooldown_us

    def record_alerts(self, alerts: Iterable[dict[str, Any]], cooldown_us: int) -> list[dict[str, Any]]:
        """Atomically: for each alert not in cooldown, update the cooldown and enqueue it in the outbox.

        Returns the alerts that were enqueued (the rest were suppressed). Re-checks the cooldown
        inside the transaction, so two concurrent triggers for one customer emit one alert.
        """
        emitted = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for a in alerts:
                    t = to_us(datetime.fromisoformat(a["as_of"].replace("Z", "+00:00")))
                    row = self._db.execute("SELECT last_as_of_us FROM cooldown WHERE customer_id=? AND alert_type=?",
                                           (a["customer_id"], a["type"])).fetchone()
                    if row is not None and abs(t - row[0]) < cooldown_us:
                        continue
                    self._db.execute(
                        "INSERT INTO cooldown VALUES (?,?,?) ON CONFLICT(customer_id, alert_type) "
                        "DO UPDATE SET last_as_of_us = MAX(last_as_of_us, excluded.last_as_of_us)",
                        (a["customer_id"], a["type"], t))
                    cur = self._db.execute("INSERT OR IGNORE INTO outbox (alert_id, payload, as_of_us) VALUES (?,?,?)",
                                           (a["alert_id"], json.dumps(a, sort_keys=True), t))
                    if cur.rowcount:
                        emitted.append(a)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return emitted

    def mark_delivered(self, alert_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET delivered=1, attempts=attempts+1, last_error=NULL WHERE alert_id=?",
                             (alert_id,))

    def mark_failed(self, alert_id: str, error: str) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts=attempts+1, last_error=? WHERE alert_id=?", (error, alert_id))

    def undelivered(self, limit: int = 1000) -> list[tuple[dict[str, Any], int, str | None]]:
        """(payload, attempts, last_error) of alerts not yet delivered, oldest event time first."""
        with self._lock:
            rows = self._db.execute("SELECT payload, attempts, last_error FROM outbox WHERE delivered=0 "
                                    "ORDER BY as_of_us, alert_id LIMIT ?", (limit,)).fetchall()
        return [(json.loads(p), n, e) for p, n, e in rows]

    def undelivered_count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox WHERE delivered=0").fetchone()[0]

    def outbox_counts(self) -> dict[str, int]:
        with self._lock:
            rows = dict(self._db.execute("SELECT delivered, COUNT(*) FROM outbox GROUP BY delivered").fetchall())
        return {"delivered": rows.get(1, 0), "undelivered": rows.get(0, 0)}

    # --- pending scoring requests -----------------------------------------------------------
    def add_pending(self, customer_ids: Iterable[str], as_of: datetime, error: str, state: str = "retry") -> None:
        t = to_us(as_of)
        with self._lock:
            self._db.executemany(
                "INSERT INTO pending (customer_id, as_of_us, attempts, last_error, state) VALUES (?,?,1,?,?) "
                "ON CONFLICT(customer_id, as_of_us) DO UPDATE SET attempts=attempts+1, last_error=excluded.last_error, "
                "state=excluded.state", [(c, t, error, state) for c in customer_ids])

    def add_triggers(self, customer_ids: Iterable[str], as_of: datetime) -> None:
        """Record scoring requests to serve later (the hook's only work): one local transaction."""
        t = to_us(as_of)
        with self._lock:
            self._db.executemany("INSERT INTO pending (customer_id, as_of_us) VALUES (?,?) "
                                 "ON CONFLICT(customer_id, as_of_us) DO NOTHING", [(c, t) for c in customer_ids])

    def remove_pending(self, customer_ids: Iterable[str], as_of: datetime) -> None:
        t = to_us(as_of)
        with self._lock:
            self._db.executemany("DELETE FROM pending WHERE customer_id=? AND as_of_us=?",
                                 [(c, t) for c in customer_ids])

    def pending(self, state: str = "retry", limit: int = 10000) -> list[Pending]:
        with self._lock:
            rows = self._db.execute("SELECT customer_id, as_of_us, attempts, last_error, state FROM pending "
                                    "WHERE state=? ORDER BY as_of_us, customer_id LIMIT ?", (state, limit)).fetchall()
        return [Pending(c, from_us(t), n, e, s) for c, t, n, e, s in rows]

    def pending_count(self, state: str = "retry") -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM pending WHERE state=?", (state,)).fetchone()[0]

    # --- rank rules' cuts -------------------------------------------------------------------
    def set_rank_threshold(self, alert_type: str, value: float, as_of: datetime) -> None:
        with self._lock:
            self._db.execute("INSERT INTO rank_threshold VALUES (?,?,?) ON CONFLICT(alert_type) DO UPDATE SET "
                             "value=excluded.value, as_of_us=excluded.as_of_us WHERE excluded.as_of_us >= as_of_us",
                             (alert_type, float(value), to_us(as_of)))

    def rank_threshold(self, alert_type: str) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM rank_threshold WHERE alert_type=?", (alert_type,)).fetchone()
        return None if row is None else float(row[0])
