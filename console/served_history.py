"""The served-feature log (``<state>/serving/served.jsonl``) as an index: each customer's served
vectors (request time and byte offset, read back on demand) and the population of latest vectors
(each customer's most recent one) that feature percentiles are measured against.

Built by one pass over the file; ``refresh()`` reads only what was appended since.
"""
from __future__ import annotations

import bisect
import json
import threading
from pathlib import Path
from typing import Any


class ServedHistory:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._offsets: dict[str, list[tuple[str, int]]] = {}   # customer -> [(request_time, byte offset)]
        self._latest: dict[str, dict[str, Any]] = {}
        self._read_to = 0
        self._sorted: dict[str, list[float]] | None = None
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        if not self.path.exists():
            return
        with self._lock, open(self.path, "rb") as f:
            f.seek(self._read_to)
            pos = self._read_to
            for line in f:
                if not line.endswith(b"\n"):
                    break                          # a line being written: next refresh
                start, pos = pos, pos + len(line)
                try:
                    rec = json.loads(line)
                    cid, t = str(rec["customer_id"]), str(rec["request_time"])
                except (ValueError, KeyError, TypeError):
                    continue
                self._offsets.setdefault(cid, []).append((t, start))
                if t >= self._latest.get(cid, {}).get("request_time", ""):
                    self._latest[cid] = rec
                    self._sorted = None
            self._read_to = pos

    def customers(self) -> int:
        return len(self._offsets)

    def vectors(self, customer_id: str, limit: int = 60) -> list[dict[str, Any]]:
        """The customer's latest ``limit`` served vectors, oldest first (one per request time)."""
        entries = sorted(dict(self._offsets.get(customer_id, [])).items())[-limit:]
        if not entries:
            return []
        out = []
        with open(self.path, "rb") as f:
            for _t, offset in entries:
                f.seek(offset)
                out.append(json.loads(f.readline()))
        return out

    def latest_vectors(self) -> list[dict[str, Any]]:
        return list(self._latest.values())

    def percentile(self, feature: str, value: Any) -> float | None:
        """The share of the population (latest vectors) with a value <= ``value``, in percent."""
        if value is None or isinstance(value, (str, bool)):
            return None
        if self._sorted is None:
            self._sorted = self._build_sorted()
        column = self._sorted.get(feature)
        if not column:
            return None
        return 100.0 * bisect.bisect_right(column, float(value)) / len(column)

    def _build_sorted(self) -> dict[str, list[float]]:
        cols: dict[str, list[float]] = {}
        for rec in self._latest.values():
            for k, v in rec.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    cols.setdefault(k, []).append(float(v))
        return {k: sorted(v) for k, v in cols.items()}
