"""Day-boundary ticks: the scheduled job that makes window features decay online.

A tick for customer c at UTC midnight m is a control record
``{"record_type": "day_tick", "customer_id": c, "timestamp": m}`` partitioned by c, so it
travels the same ordered per-customer path as c's events. The handler applies it only if
``features.state.needs_tick`` says a window can still change (from the day after the first
event until MAX_WINDOW_DAYS after the last one), so enqueuing too many is harmless.

* embedded: :class:`TickPlanner` (used by the replay runner) remembers each customer's last
  event day and names the customers due at a midnight;
* AWS: :func:`enqueue_day_ticks` (a scheduled invocation at 00:00 UTC) reads the live
  customers from the state store (``tick_until >= day``) and puts their ticks on the stream.
"""
from __future__ import annotations

import json

from features import catalog as C
from features.state import DAY_US

from .records import tick_record


class TickPlanner:
    def __init__(self):
        self.last_day: dict[str, int] = {}

    def saw(self, customer_id: str, ts_us: int) -> None:
        d = ts_us // DAY_US
        if d > self.last_day.get(customer_id, -1 << 62):
            self.last_day[customer_id] = d

    def due(self, midnight_us: int) -> list[str]:
        """Customers seen before ``midnight_us`` whose windows may still change at it."""
        day = midnight_us // DAY_US
        return sorted(c for c, d in self.last_day.items() if day - C.MAX_WINDOW_DAYS <= d < day)


def enqueue_day_ticks(kinesis, stream_name: str, state_store, midnight_us: int, max_attempts: int = 5) -> int:
    """Put a day tick at ``midnight_us`` on the stream for every live customer; returns how many."""
    if midnight_us % DAY_US:
        raise ValueError(f"midnight_us: expected an exact UTC midnight, got {midnight_us}")
    customers = state_store.live_customers(midnight_us // DAY_US)
    entries = [{"Data": json.dumps(tick_record(c, midnight_us), separators=(",", ":")).encode(), "PartitionKey": c}
               for c in customers]
    for i in range(0, len(entries), 500):
        pending = entries[i:i + 500]
        for _ in range(max_attempts):
            resp = kinesis.put_records(StreamName=stream_name, Records=pending)
            if not resp.get("FailedRecordCount"):
                break
            pending = [e for e, r in zip(pending, resp["Records"]) if r.get("ErrorCode")]
        else:
            raise RuntimeError(f"{len(pending)} day ticks could not be put on {stream_name}")
    return len(entries)
