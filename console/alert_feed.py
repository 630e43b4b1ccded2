"""The alerts the serving path emitted, newest first: the outbox (``<state>/serving/state.sqlite``,
every profile's scorer writes it before publishing) merged with the local alert log
(``<state>/alerts/alerts.jsonl``, the local profile's sink), deduplicated by ``alert_id``.

An alert line without ``alert_id`` gets the id ``serving.alerts.alert_id`` derives (customer, type,
as-of, model version), so acknowledgements key the same alert the same way whatever its source.
Both sources are re-read only when they changed (size / modification time).
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UsageError
from core.times import parse_utc_time
from serving.alerts import alert_id


@dataclass(frozen=True)
class Page:
    items: list
    total: int
    offset: int
    limit: int

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.offset + self.limit < self.total else None

    @property
    def prev_offset(self) -> int | None:
        return max(self.offset - self.limit, 0) if self.offset > 0 else None


def ensure_id(alert: dict[str, Any]) -> dict[str, Any]:
    if not alert.get("alert_id"):
        as_of = parse_utc_time(str(alert.get("as_of", "")), "as_of")
        alert = {**alert, "alert_id": alert_id(str(alert.get("customer_id", "")), str(alert.get("type", "")),
                                               as_of, str(alert.get("model_version", "")))}
    return alert


def _stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_size, st.st_mtime_ns)


class AlertFeed:
    def __init__(self, state_dir: str | Path, state_db: str = "serving/state.sqlite",
                 alert_log: str = "alerts/alerts.jsonl"):
        self.db_path = Path(state_dir) / state_db
        self.log_path = Path(state_dir) / alert_log
        self._stamps: tuple = ()
        self._alerts: list[dict[str, Any]] = []

    def all(self) -> list[dict[str, Any]]:
        """Every alert, newest as-of first (cached until a source changes)."""
        stamps = (_stamp(self.db_path), _stamp(Path(str(self.db_path) + "-wal")), _stamp(self.log_path))
        if stamps != self._stamps:
            self._alerts, self._stamps = self._load(), stamps
        return self._alerts

    def _load(self) -> list[dict[str, Any]]:
        by_id: dict[str, dict[str, Any]] = {}
        for alert in self._from_outbox() + self._from_log():
            try:
                alert = ensure_id(alert)
            except UsageError:
                continue  # a line without a readable as-of time cannot be keyed: not shown
            by_id.setdefault(alert["alert_id"], alert)
        return sorted(by_id.values(), key=lambda a: (str(a.get("as_of", "")), a["alert_id"]), reverse=True)

    def _from_outbox(self) -> list[dict[str, Any]]:
        if not self.db_path.exists():
            return []
        con = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT payload FROM outbox").fetchall()
        except sqlite3.OperationalError:   # no outbox table yet
            rows = []
        finally:
            con.close()
        return [a for a in (_parse(r[0]) for r in rows) if a is not None]

    def _from_log(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        with open(self.log_path, encoding="utf-8") as f:
            return [a for a in (_parse(line) for line in f if line.strip()) if a is not None]

    def select(self, *, type_: str = "", severity: str = "", customer_id: str = "", day: str = "", offset: int = 0,
               limit: int = 50) -> Page:
        """``day``: YYYY-MM-DD of the alerts' as-of time (UTC)."""
        items = [a for a in self.all()
                 if (not type_ or a.get("type") == type_) and (not severity or a.get("severity") == severity)
                 and (not customer_id or a.get("customer_id") == customer_id)
                 and (not day or str(a.get("as_of", "")).startswith(day))]
        return Page(items[offset:offset + limit], len(items), offset, limit)

    def by_id(self, alert_id_: str) -> dict[str, Any] | None:
        return next((a for a in self.all() if a["alert_id"] == alert_id_), None)

    def types(self) -> list[str]:
        return sorted({str(a.get("type")) for a in self.all()})

    def severities(self) -> list[str]:
        return sorted({str(a.get("severity")) for a in self.all()})


def _parse(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
