"""Test helpers: hand-written event histories, written as a real Parquet event log,
and the incremental engine replayed over them (events in order plus day ticks)."""
from __future__ import annotations

import itertools
import os
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from features import state as S
from ingestion.contract import EVENT_LOG_SCHEMA, format_timestamp, parse_event

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ids = itertools.count()


def ts(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def us(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


def ev(event_type: str, at: str | datetime, **fields):
    at = ts(at) if isinstance(at, str) else at
    fields.setdefault("customer_id", "c1") if event_type != "tutor_availability" else None
    rec = {"event_type": event_type, "event_id": f"e{next(_ids):08d}", "timestamp": format_timestamp(at), **fields}
    return parse_event(rec)


def session(at, status="completed", rating=None, tutor="t1", duration=60.0, **kw):
    extra = {"cancelled_by": kw.pop("cancelled_by", "student")} if status == "cancelled" else {}
    if status == "completed":
        extra["duration_minutes"] = duration
        if rating is not None:
            extra["student_rating"] = rating
    return ev("session_completed", at, session_id=f"s{next(_ids)}", tutor_id=tutor, subject="algebra",
              status=status, **extra, **kw)


def write_log(events, root) -> str:
    """Write events as the simulator does: Parquet partitioned by UTC date."""
    by_day: dict[str, list] = {}
    for e in sorted(events, key=lambda e: (e.timestamp, e.event_id)):
        by_day.setdefault(e.timestamp.strftime("%Y-%m-%d"), []).append(e)
    for day, evs in by_day.items():
        d = os.path.join(root, f"date={day}")
        os.makedirs(d, exist_ok=True)
        rows = [{k: e.model_dump().get(k) for k in EVENT_LOG_SCHEMA.names} for e in evs]
        pq.write_table(pa.Table.from_pylist(rows, schema=EVENT_LOG_SCHEMA), os.path.join(d, "part-0.parquet"))
    return str(root)


def replay(events, until: datetime) -> dict[str, dict[int, dict]]:
    """customer -> {instant_us: snapshot}, driving the incremental engine as the stream does."""
    out: dict[str, dict[int, dict]] = {}
    until_us = us(until)
    by_c: dict[str, list] = {}
    for e in sorted(events, key=lambda e: (e.timestamp, e.event_id)):
        if getattr(e, "customer_id", None) and us(e.timestamp) <= until_us:
            by_c.setdefault(e.customer_id, []).append(e)
    for cid, evs in by_c.items():
        st, snaps, i = S.new_state(), {}, 0
        midnight = (us(evs[0].timestamp) // S.DAY_US + 1) * S.DAY_US
        while i < len(evs) or S.needs_tick(st, midnight):
            t_ev = us(evs[i].timestamp) if i < len(evs) else None
            if t_ev is not None and t_ev < midnight:
                while i < len(evs) and us(evs[i].timestamp) == t_ev:
                    S.apply_event(st, evs[i].model_dump(), t_ev, evs[i].event_id)
                    i += 1
                snaps[t_ev] = S.snapshot(st)
            else:
                if midnight > until_us:
                    break
                if S.needs_tick(st, midnight):
                    S.advance(st, midnight)
                    snaps[midnight] = S.snapshot(st)
                midnight += S.DAY_US
        out[cid] = snaps
    return out
