"""One simulated day's events as parallel numpy arrays (no strings: ids are made at write time).

Times are ``tod``: microseconds since 00:00 UTC of the day that produced the
event; delayed events (a match, a tutor's reply) may exceed one day and are
carried to their own date by the writer.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterable

import numpy as np

from events.contract import EVENT_TYPES, SESSION_STATUSES
from events.filters import EventFilter
from labels import LabelAggregate

CODE = {name: np.int8(i) for i, name in enumerate(EVENT_TYPES)}
COMPLETED, CANCELLED, NO_SHOW = 0, 1, 2          # events.contract.SESSION_STATUSES order
BY_STUDENT, BY_TUTOR = 0, 1                      # events.contract.CANCELLERS order
FAILURE_REASONS = ("card_declined", "insufficient_funds", "expired_card")
CANCEL_REASONS = ("too_expensive", "tutor_quality", "scheduling", "no_longer_needed", "payment_failure")

_DEFAULTS = dict(cust=-1, tutor=-1, subject=-1, status=-1, canceller=-1, category=-1, escalated=-1,
                 origin_day=0, rating=np.nan, value=np.nan, sentiment=np.nan)


@dataclass
class DayEvents:
    etype: np.ndarray       # int8 code (index into EVENT_TYPES)
    tod: np.ndarray         # int64 microseconds since the producing day's midnight
    cust: np.ndarray        # int32 customer index, -1 for tutor-keyed events
    tutor: np.ndarray       # int32 tutor index, -1 if none
    subject: np.ndarray     # int8
    status: np.ndarray      # int8 session status
    canceller: np.ndarray   # int8
    category: np.ndarray    # int8: call category / payment failure reason / cancellation reason
    escalated: np.ndarray   # int8 -1/0/1
    origin_day: np.ndarray  # int32 day the booking request was made (request_id)
    rating: np.ndarray      # float64
    value: np.ndarray       # float64: duration/amount/time to match/response time/hours, by type
    sentiment: np.ndarray   # float64

    @classmethod
    def block(cls, etype: str, tod: np.ndarray, **cols) -> "DayEvents":
        n = len(tod)
        data = {}
        for f in fields(cls):
            if f.name == "etype":
                data["etype"] = np.full(n, CODE[etype], np.int8)
            elif f.name == "tod":
                data["tod"] = np.asarray(tod, np.int64)
            else:
                default = _DEFAULTS[f.name]
                dtype = _DTYPES[f.name]
                v = cols.pop(f.name, None)
                data[f.name] = np.full(n, default, dtype) if v is None else np.broadcast_to(np.asarray(v, dtype), (n,)).copy()
        if cols:
            raise TypeError(f"unknown DayEvents columns {sorted(cols)}")
        return cls(**data)

    @classmethod
    def concat(cls, parts: list["DayEvents"]) -> "DayEvents":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    def select(self, mask_or_index: np.ndarray) -> "DayEvents":
        return DayEvents(**{f.name: getattr(self, f.name)[mask_or_index] for f in fields(self)})

    def shift(self, us: int) -> "DayEvents":
        """The same events with tod re-expressed relative to a day ``us`` microseconds later."""
        out = self.select(slice(None))
        out.tod = self.tod - us
        return out

    def __len__(self) -> int:
        return len(self.etype)

    def matches(self, source: EventFilter) -> np.ndarray:
        """Which events ``source`` selects: the event-filter language, vectorised over the arrays
        (a missing value -- code -1 or NaN -- satisfies no comparison, as in SQL)."""
        m = np.isin(self.etype, [CODE[t] for t in source.event_types])
        for c in source.where:
            if c.field not in _FIELDS:
                raise ValueError(f"event filter: field {c.field!r} is not simulated as a DayEvents column; "
                                 f"expected one of {sorted(_FIELDS)}")
            column, vocabulary = _FIELDS[c.field]
            v = getattr(self, column)
            null = np.isnan(v) if v.dtype.kind == "f" else v < 0
            if c.op == "not_null":
                m &= ~null
            elif c.op == "==":
                m &= ~null & (v == (vocabulary.index(c.value) if vocabulary else c.value))
            elif c.op in ("<", ">") and not vocabulary:
                m &= ~null & ((v < c.value) if c.op == "<" else (v > c.value))
            else:
                raise ValueError(f"event filter: {c.describe()} is not supported on DayEvents")
        return m

    def label_counts(self, n: int, keep: np.ndarray,
                     aggregates: Iterable[LabelAggregate]) -> dict[str, np.ndarray]:
        """Per-customer values of label aggregates over the kept events (vectorised bincount); the
        caller keeps the events of each aggregate's window."""
        e = self.select(keep & (self.cust >= 0))
        out: dict[str, np.ndarray] = {}
        masks: dict[EventFilter, np.ndarray] = {}
        for a in aggregates:
            mask = masks.get(a.source)
            if mask is None:
                mask = masks[a.source] = e.matches(a.source)
            weights = None
            if a.value is not None:
                weights = getattr(e, _FIELDS[a.value][0])[mask]
                weights = np.where(np.isnan(weights), 0.0, weights)   # as SQL's SUM: a missing value adds nothing
            out[a.name] = np.bincount(e.cust[mask], weights=weights, minlength=n)
        return out


#: event-contract field -> (DayEvents column, its vocabulary when the column holds codes)
_FIELDS = {"status": ("status", SESSION_STATUSES), "student_rating": ("rating", None)}

_DTYPES = dict(cust=np.int32, tutor=np.int32, subject=np.int8, status=np.int8, canceller=np.int8,
               category=np.int8, escalated=np.int8, origin_day=np.int32, rating=np.float64,
               value=np.float64, sentiment=np.float64)
