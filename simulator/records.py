"""Turn a day's numpy events into the contract's wide event-log table, and that table into JSON lines.

Both are vectorised (pyarrow compute); no per-event Python. All string values
are generated ids and contract enums, which need no JSON escaping.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.times import date_us
from events.contract import (
    CALL_CATEGORIES,
    CANCELLERS,
    CATEGORIES,
    CHANNELS,
    EVENT_LOG_SCHEMA,
    EVENT_TYPES,
    REGIONS,
    SCHEMA_VERSION,
    SESSION_STATUSES,
    SUBJECTS,
    TIERS,
)

from .day_events import CANCEL_REASONS, CODE, FAILURE_REASONS, DayEvents
from .world import World, subject_category_index


class RecordBuilder:
    """Holds the world's id dictionaries once; ``table(day_events, date)`` per day."""

    def __init__(self, world: World):
        c, t = world.customers, world.tutors
        self.start = world.config.start_date
        self.customer_ids = pa.array(c.ids)
        self.tutor_ids = pa.array(t.ids)
        self.c = c
        self.category = subject_category_index(c.subject)
        self.dicts = {name: pa.array(values) for name, values in dict(
            event_type=EVENT_TYPES, subject=SUBJECTS, status=SESSION_STATUSES, cancelled_by=CANCELLERS,
            tier=TIERS, acquisition_channel=CHANNELS, subject_category=CATEGORIES, region=REGIONS,
            issue_category=CALL_CATEGORIES, failure_reason=FAILURE_REASONS, reason=CANCEL_REASONS).items()}

    def table(self, ev: DayEvents, date: dt.date) -> pa.Table:
        """The day's events (tod within [0, 1 day)) sorted by (timestamp, type, customer, tutor), ids assigned."""
        ts = date_us(date) + ev.tod
        ev = ev.select(np.lexsort((ev.tutor, ev.cust, ev.etype, ts)))
        ts = date_us(date) + ev.tod
        n = len(ev)
        seq = pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), 8, "0")
        event_id = pc.binary_join_element_wise(f"ev-{date:%Y%m%d}-", seq, "")
        is_ = {name: ev.etype == CODE[name] for name in EVENT_TYPES}
        signup = is_["customer_signup"]
        session = is_["session_completed"]
        call = is_["inbound_call"]
        payment = is_["payment_succeeded"] | is_["payment_failed"]
        booking = is_["booking_request"] | is_["booking_matched"]
        cust = np.where(ev.cust >= 0, ev.cust, 0)
        customer_id = self._take(self.customer_ids, cust, ev.cust >= 0)
        request_dates = pa.array([f"{self.start + dt.timedelta(days=int(d)):%Y%m%d}" for d in range(
            int(ev.origin_day.min(initial=0)), int(ev.origin_day.max(initial=0)) + 1)])
        origin = ev.origin_day - ev.origin_day.min(initial=0)
        referrer = self.c.referrer[cust]
        cols = {
            "event_id": event_id,
            "event_type": pc.take(self.dicts["event_type"], pa.array(ev.etype)),
            "timestamp": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "schema_version": pa.array(np.full(n, SCHEMA_VERSION, np.int64)),
            "customer_id": customer_id,
            "tutor_id": self._take(self.tutor_ids, np.maximum(ev.tutor, 0), ev.tutor >= 0),
            "tier": self._take(self.dicts["tier"], self.c.tier[cust], signup),
            "acquisition_channel": self._take(self.dicts["acquisition_channel"], self.c.channel[cust], signup),
            "grade_level": pa.array(self.c.grade[cust].astype(np.int64), mask=~signup),
            "subject_category": self._take(self.dicts["subject_category"], self.category[cust], signup),
            "primary_subject": self._take(self.dicts["subject"], self.c.subject[cust], signup),
            "region": self._take(self.dicts["region"], self.c.region[cust], signup),
            "referrer_id": self._take(self.customer_ids, np.maximum(referrer, 0), signup & (referrer >= 0)),
            "session_id": pc.binary_join_element_wise("se-", pc.if_else(pa.array(session), event_id, None), ""),
            "subject": self._take(self.dicts["subject"], np.maximum(ev.subject, 0), ev.subject >= 0),
            "status": self._take(self.dicts["status"], np.maximum(ev.status, 0), session),
            "cancelled_by": self._take(self.dicts["cancelled_by"], np.maximum(ev.canceller, 0), ev.canceller >= 0),
            "student_rating": self._float(ev.rating, session),
            "duration_minutes": self._float(ev.value, session),
            "duration_seconds": self._float(ev.value, call),
            "sentiment_score": self._float(ev.sentiment, call),
            "issue_category": self._take(self.dicts["issue_category"], np.maximum(ev.category, 0), call),
            "escalated": pa.array(ev.escalated == 1, mask=~call),
            "amount": self._float(ev.value, payment),
            "failure_reason": self._take(self.dicts["failure_reason"], np.maximum(ev.category, 0),
                                         is_["payment_failed"]),
            "reason": self._take(self.dicts["reason"], np.maximum(ev.category, 0), is_["subscription_cancelled"]),
            "request_id": pc.binary_join_element_wise(
                "rq-", pc.if_else(pa.array(booking), customer_id, None), "-",
                pc.take(request_dates, pa.array(origin)), ""),
            "time_to_match_minutes": self._float(ev.value, is_["booking_matched"]),
            "available_hours": self._float(ev.value, is_["tutor_availability"]),
            "response_time_minutes": self._float(ev.value, is_["tutor_response"]),
            "referred_customer_id": pa.nulls(n, pa.string()),
        }
        return pa.Table.from_arrays([cols[f.name] for f in EVENT_LOG_SCHEMA], schema=EVENT_LOG_SCHEMA)

    @staticmethod
    def _take(dictionary: pa.Array, index: np.ndarray, valid: np.ndarray) -> pa.Array:
        return pc.take(dictionary, pa.array(np.asarray(index, np.int64), mask=~np.asarray(valid, bool)))

    @staticmethod
    def _float(values: np.ndarray, valid: np.ndarray) -> pa.Array:
        return pa.array(values, pa.float64(), mask=~valid | np.isnan(values))


def json_lines(table: pa.Table) -> bytes:
    """One JSON object per row, null fields omitted, timestamps as ...Z; the rows' order is kept.

    Built per event type over only the columns that type fills (a third of the
    wide table), then put back in row order.
    """
    if table.num_rows == 0:
        return b""
    etype = table.column("event_type").to_numpy(zero_copy_only=False)
    pieces, positions = [], []
    for name in EVENT_TYPES:
        idx = np.flatnonzero(etype == name)
        if idx.size == 0:
            continue
        sub = table.take(idx)
        keep = [i for i, c in enumerate(sub.columns) if c.null_count < sub.num_rows]
        pieces.append(_lines(sub.select(keep)))
        positions.append(idx)
    lines = pa.concat_arrays(pieces).take(pa.array(np.argsort(np.concatenate(positions), kind="stable")))
    return "".join(lines.to_pylist()).encode()


def _lines(table: pa.Table) -> pa.Array:
    parts = []
    for field, col in zip(table.schema, table.columns):
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_timestamp(field.type):
            # numpy formats microsecond datetimes five times faster than pc.strftime
            us = col.cast(pa.int64()).to_numpy(zero_copy_only=False).astype("datetime64[us]")
            text = pc.binary_join_element_wise('"', pa.array(np.datetime_as_string(us), pa.string()), 'Z"', "")
        elif pa.types.is_string(field.type):
            text = pc.binary_join_element_wise('"', col, '"', "")
        elif pa.types.is_floating(field.type):  # "179.0", not "179": a reader sees a float
            text = pc.cast(col, pa.string())
            text = pc.if_else(pc.match_substring_regex(text, "[.eE]"), text,
                              pc.binary_join_element_wise(text, ".0", ""))
        else:  # integers and booleans print as JSON literals ("1", "true")
            text = pc.cast(col, pa.string())
        parts.append(pc.binary_join_element_wise(f'"{field.name}":', text, ""))
    body = pc.binary_join_element_wise(*parts, ",", null_handling="skip")
    return pc.binary_join_element_wise("{", body, "}\n", "")
