"""Test helpers: hand-written event histories, written as a real Parquet event log,
and the incremental engine replayed over them (events in order plus day ticks)."""
from __future__ import annotations

import itertools
import os
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq

from events.contract import EVENT_LOG_SCHEMA, format_timestamp, parse_event
from features import catalog as C
from features import state as S

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


def local_feature_store(root, events, until: datetime, feast_dir: str = "feast"):
    """``events`` -> ``root/events`` (Parquet log) -> ``root/features`` (backfill as of ``until``) ->
    an embedded Feast store in ``root/feast_dir`` with the definitions applied (nothing materialized)."""
    from features import store as FS
    from features.backfill import run_backfill

    run_backfill(write_log(events, root / "events"), str(root / "features"), until=until, progress=False)
    store = FS.open_store("local", root / feast_dir)
    FS.apply(store, str(root / "features"))
    return store


def aws_local_feature_store(root, events_dir, until: datetime, data: str, feast_dir: str = "feast"):
    """The local Parquet log ``events_dir`` -> ``root/features`` (backfill as of ``until``) -> the
    feature tables copied under ``data``/features (s3://, moto) -> an aws-local Feast store in
    ``root/feast_dir`` with the definitions applied (nothing materialized). The backfill reads the
    local copy: dozens of small daily objects through moto cost ~1 s each."""
    from pathlib import Path

    from core import storage
    from features import store as FS
    from features.backfill import run_backfill

    features = Path(root) / "features"
    run_backfill(str(events_dir), str(features), until=until, progress=False)
    for f in sorted(features.rglob("*.parquet")):
        storage.write_parquet(pq.read_table(f), storage.join(data, "features", str(f.relative_to(features))))
    store = FS.open_store("aws-local", Path(root) / feast_dir, data)
    FS.apply(store, storage.join(data, "features"))
    return store


class RecordCollector:
    """Stands in for the ingester to capture the Kinesis records a replay produces (ticks included)."""

    def __init__(self):
        self.records = []

    def handle(self, event):
        self.records += event["Records"]
        return {"batchItemFailures": []}


def _backfill_midnight(st: dict, midnight: int) -> bool:
    """The backfill writes a row at every midnight after the first event until MAX_WINDOW_DAYS after
    the last one (online, only the ticks that change the row are sent: ``S.needs_tick``)."""
    return (st["clock"] is not None and midnight > st["clock"]
            and S.day_of(st["watermark"][0]) >= S.day_of(midnight) - C.MAX_WINDOW_DAYS)


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
        while i < len(evs) or _backfill_midnight(st, midnight):
            t_ev = us(evs[i].timestamp) if i < len(evs) else None
            if t_ev is not None and t_ev < midnight:
                while i < len(evs) and us(evs[i].timestamp) == t_ev:
                    S.apply_event(st, evs[i].model_dump(), t_ev, evs[i].event_id)
                    i += 1
                snaps[t_ev] = S.snapshot(st)
            else:
                if midnight > until_us:
                    break
                if _backfill_midnight(st, midnight):
                    S.advance(st, midnight)
                    snaps[midnight] = S.snapshot(st)
                midnight += S.DAY_US
        out[cid] = snaps
    return out


def random_history(rng, customers, days):
    start = ts("2025-01-01T00:00:00Z")
    out = []
    for c in range(customers):
        cid = f"c{c}"
        out.append(ev("customer_signup", start + timedelta(hours=rng.random() * 24), customer_id=cid,
                      tier=rng.choice(["budget", "standard", "premium"]), acquisition_channel="paid",
                      grade_level=rng.randint(1, 13), subject_category="STEM", primary_subject="algebra",
                      region="west"))
        for _ in range(rng.randint(3, 50)):
            t = start + timedelta(days=rng.random() * days)
            if rng.random() < 0.1:
                t = t.replace(hour=0, minute=0, second=0, microsecond=0)  # midnight edge cases
            kind = rng.choice(["session", "session", "call", "login", "message", "pay_ok", "pay_fail",
                               "booking", "referral"])
            if kind == "session":
                status = rng.choice(["completed", "completed", "cancelled", "no_show"])
                out.append(session(t, status=status, rating=rng.choice([None, 2.5, 4.0, 4.5, 5.0]),
                                   tutor=rng.choice(["t1", "t2", "t3"]), duration=rng.choice([30.0, 45.5, 60.0]),
                                   customer_id=cid))
            elif kind == "call":
                out.append(ev("inbound_call", t, customer_id=cid, duration_seconds=rng.random() * 900,
                              sentiment_score=rng.uniform(-1, 1), issue_category="billing",
                              escalated=rng.random() < 0.3))
            elif kind in ("pay_ok", "pay_fail"):
                out.append(ev("payment_succeeded" if kind == "pay_ok" else "payment_failed", t, customer_id=cid,
                              amount=round(rng.uniform(10, 200), 2)))
            elif kind == "booking":
                out.append(ev("booking_request", t, customer_id=cid, request_id=f"r{rng.random()}",
                              subject="algebra"))
            else:
                out.append(ev({"login": "login", "message": "message_sent", "referral": "referral_made"}[kind], t,
                              customer_id=cid))
    for tutor in ("t1", "t2"):
        for w in range(days // 7 + 1):
            out.append(ev("tutor_availability", start + timedelta(days=7 * w, hours=3), tutor_id=tutor,
                          subject="algebra", available_hours=10.0))
    return out


def same_value(a, b, rel=1e-9) -> bool:
    """Equal, treating None/NaN/NaT alike and floats to a relative tolerance."""
    import math

    import pandas as pd

    na_a, na_b = a is None or bool(pd.isna(a)), b is None or bool(pd.isna(b))
    if na_a or na_b:
        return na_a and na_b
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, (pd.Timestamp,)) or isinstance(b, pd.Timestamp):
        return pd.Timestamp(a) == pd.Timestamp(b)
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=1e-12)
