"""Day-boundary ticks: the scheduled job that makes window features decay online.

A tick for customer c at UTC midnight m is a control record
``{"record_type": "day_tick", "customer_id": c, "timestamp": m}`` partitioned by c, so it
travels the same ordered per-customer path as c's events. A tick changes c's feature row only
when a day of c's activity leaves a window at m (m = that day + one of
``features.state.TICK_AGES``, e.g. 7, 14, 30 days), so only those ticks are enqueued; the
handler applies a tick only if ``features.state.needs_tick`` holds (the same rule on the state), so
an extra tick is a no-op.

* embedded: :class:`TickPlanner` (used by the replay runner) remembers each customer's event
  days within the widest window and names the customers due at a midnight;
* AWS: :func:`enqueue_day_ticks` (a scheduled invocation at 00:00 UTC) reads the live
  customers from the state store (``tick_until >= day``), keeps those whose row changes at the
  midnight (``features.state.needs_tick``) and puts their ticks on the stream.
"""
from __future__ import annotations

import bisect
import json

from features import catalog as C
from features.state import DAY_US, TICK_AGES, needs_tick

from .records import tick_record


class TickPlanner:
    def __init__(self):
        self.days: dict[str, list[int]] = {}    # customer -> its event days, ascending, within the widest window

    def saw(self, customer_id: str, ts_us: int) -> None:
        d = ts_us // DAY_US
        days = self.days.setdefault(customer_id, [])
        if d not in days:
            bisect.insort(days, d)

    def due(self, midnight_us: int) -> list[str]:
        """Customers seen before ``midnight_us`` whose feature row changes at it (one of their event
        days leaves a window). Days older than every window are forgotten (bounded memory)."""
        day = midnight_us // DAY_US
        out = []
        for c in list(self.days):
            days = self.days[c]
            while days and days[0] < day - C.MAX_WINDOW_DAYS:
                del days[0]
            if not days:
                del self.days[c]
            elif any(day - d in TICK_AGES for d in days):
                out.append(c)
        return sorted(out)


def enqueue_day_ticks(kinesis, stream_name: str, state_store, midnight_us: int, max_attempts: int = 5) -> int:
    """Put a day tick at ``midnight_us`` on the stream for every customer whose row changes at it;
    returns how many."""
    if midnight_us % DAY_US:
        raise ValueError(f"midnight_us: expected an exact UTC midnight, got {midnight_us}")
    live = state_store.live_customers(midnight_us // DAY_US)
    items = state_store.load_many(live)
    customers = [c for c in live if c in items and needs_tick(items[c].state, midnight_us)]
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
