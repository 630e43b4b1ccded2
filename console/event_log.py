"""Recent events of one customer from the event log (Parquet by UTC date, local or s3://).

The log is loaded once into an in-memory DuckDB table sorted by customer and time, so a customer's
page reads its events by a zone-map-pruned scan (milliseconds) instead of re-reading every file.
Every query is bounded (``limit`` <= 200, with an offset).
"""
from __future__ import annotations

import math
import threading
from datetime import datetime
from typing import Any

from core import storage
from core.times import to_us

MAX_LIMIT = 200


class EventLog:
    def __init__(self, events_uri: str):
        self._con = storage.duckdb_connect([events_uri])
        glob = events_uri.rstrip("/") + "/**/*.parquet"
        self._lock = threading.Lock()
        self._con.execute(f"""CREATE TABLE ev AS
            SELECT * EXCLUDE (date) FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)
            WHERE customer_id IS NOT NULL ORDER BY customer_id, "timestamp" """)
        self.columns = [r[0] for r in self._con.execute("DESCRIBE ev").fetchall()]

    def recent(self, customer_id: str, until: datetime, limit: int = 20, offset: int = 0) -> tuple[list[dict], int]:
        """The customer's events at or before ``until``, newest first, and how many there are."""
        limit = max(1, min(int(limit), MAX_LIMIT))
        with self._lock:
            total = self._con.execute(
                "SELECT COUNT(*) FROM ev WHERE customer_id = ? AND epoch_us(\"timestamp\") <= ?",
                [customer_id, to_us(until)]).fetchone()[0]
            cur = self._con.execute(
                "SELECT * FROM ev WHERE customer_id = ? AND epoch_us(\"timestamp\") <= ? "
                "ORDER BY \"timestamp\" DESC, event_id LIMIT ? OFFSET ?",
                [customer_id, to_us(until), limit, max(0, int(offset))])
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return [{k: v for k, v in zip(names, r) if _present(v)} for r in rows], total

    def known(self, customer_id: str) -> bool:
        with self._lock:
            return self._con.execute("SELECT 1 FROM ev WHERE customer_id = ? LIMIT 1", [customer_id]).fetchone() is not None

    def close(self) -> None:
        with self._lock:
            self._con.close()


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))
