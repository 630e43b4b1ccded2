"""The embedded runner: replay the simulator's time-ordered stream through the handler.

Lines of ``stream.jsonl`` become Kinesis-shaped records (base64 data, increasing sequence
numbers, partition key = entity key, approximateArrivalTimestamp = the replay clock) and go to
``Ingester.handle`` in batches of ``batch_size``. Before the first record at or after each
UTC midnight, the runner enqueues that midnight's day ticks (:class:`TickPlanner`), exactly as
the scheduled job does on AWS. The stream may be in arrival order (late and re-sent lines,
``mhp simulate --late-share``): the replay clock is the latest timestamp seen, and a late line
is followed by its customer's ticks at the midnights its day has already passed a window at. ``run_until(t)`` stops after every record and tick at or
before t and flushes, so the online store is then "as of t" (the parity test pauses there).
"""
from __future__ import annotations

import json
import os
from typing import Iterator

from events.contract import TUTOR_KEYED_TYPES
from features.state import DAY_US, TICK_AGES

from .records import kinesis_record, partition_key_of, tick_record, to_us
from .ticks import TickPlanner


def _line_meta(line: bytes) -> tuple[int | None, str | None, str | None]:
    """(ts_us, partition key, customer id) of a stream line; Nones when it is unreadable."""
    from datetime import datetime

    try:
        obj = json.loads(line)
        ts = datetime.fromisoformat(obj["timestamp"].replace("Z", "+00:00"))
        if ts.tzinfo is None:
            return None, None, None
        cid = None if obj.get("event_type") in TUTOR_KEYED_TYPES else obj.get("customer_id")
        return to_us(ts), partition_key_of(obj), cid
    except Exception:  # noqa: BLE001 - the handler dead-letters it with the precise reason
        return None, None, None


class StreamReplay:
    def __init__(self, ingester, stream_path: str | os.PathLike, batch_size: int = 500, progress=None):
        self.ingester = ingester
        self.path = str(stream_path)
        self.batch_size = batch_size
        self.progress = progress          # a tqdm bar (updated per stream line) or None
        self.planner = TickPlanner()
        self.seq = 0
        self.clock_us: int | None = None    # replay clock: latest record time sent
        self.next_midnight: int | None = None
        self.batch: list[dict] = []
        self.invocations = 0
        self.lines = 0
        self.ticks_sent = 0
        self.failures: list[dict] = []       # batchItemFailures returned by the handler
        self._lines = self._read()
        self._peek: tuple | None = None

    def _read(self) -> Iterator[tuple]:
        with open(self.path, "rb") as f:
            for line in f:
                line = line.strip()
                if line:
                    yield (line, *_line_meta(line))

    def _send(self, data: bytes, key: str, arrival_us: int) -> None:
        self.seq += 1
        self.batch.append(kinesis_record(data, key or "unknown", self.seq, arrival_us))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        resp = self.ingester.handle({"Records": self.batch})
        self.invocations += 1
        self.failures += resp.get("batchItemFailures", [])
        self.batch = []

    def _ticks_through(self, t_us: int) -> None:
        """Enqueue the ticks of every midnight <= t_us not yet enqueued."""
        if self.next_midnight is None:
            return
        while self.next_midnight <= t_us:
            m = self.next_midnight
            for c in self.planner.due(m):
                self._send(json.dumps(tick_record(c, m), separators=(",", ":")).encode(), c, m)
                self.ticks_sent += 1
            self.next_midnight += DAY_US

    def _missed_ticks(self, cid: str, ts: int) -> None:
        """A late event's day may have left a window at a midnight already ticked (when the planner
        did not know it): tick the customer there now, after the event (a no-op if it is moot)."""
        if self.next_midnight is None:
            return
        day = ts // DAY_US
        for m in sorted((day + a) * DAY_US for a in TICK_AGES):
            if ts < m < self.next_midnight:
                self._send(json.dumps(tick_record(cid, m), separators=(",", ":")).encode(), cid, self.clock_us)
                self.ticks_sent += 1

    def run_until(self, t_us: int | None = None) -> None:
        """Send every line (and tick) at or before ``t_us`` (None: the whole stream), then flush."""
        while True:
            if self._peek is None:
                self._peek = next(self._lines, None)
                if self._peek is None:
                    break
            line, ts, key, cid = self._peek
            if ts is not None and t_us is not None and ts > t_us:
                break
            self._peek = None
            self.lines += 1
            if ts is not None:
                self._ticks_through(ts)
                if self.next_midnight is None:
                    self.next_midnight = (ts // DAY_US + 1) * DAY_US
                late = self.clock_us is not None and ts < self.clock_us
                self.clock_us = ts if self.clock_us is None else max(self.clock_us, ts)
                if cid is not None:
                    self.planner.saw(cid, ts)
            self._send(line, key, self.clock_us if self.clock_us is not None else 0)
            if ts is not None and cid is not None and late:
                self._missed_ticks(cid, ts)
            if self.progress is not None:
                self.progress.update(1)
        if t_us is not None:
            self._ticks_through(t_us)
        self.flush()

    def finish_ticks(self, until_us: int) -> None:
        """After the stream: keep ticking the midnights up to ``until_us`` (windows decay to zero)."""
        self._ticks_through(until_us)
        self.flush()
