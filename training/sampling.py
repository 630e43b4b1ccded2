"""Entity rows ``(customer_id, event_timestamp)`` of a training set, sampled from the event log.

``SamplingPolicy`` (set-based, DuckDB over the Parquet log; docs/model.md#training-sets):

* *snapshots*: every active customer (signed up at or before t, not yet cancelled:
  ``signup_ts <= t < cancel_ts``) at 00:00 UTC every ``cadence_days`` days in the range
  the caller gives (``build_training_set``: from ``activity_start + warmup_days``, when the
  feature windows are filled, to the last t whose label horizon fits in the data);
* *event rows*: a seeded sample (``event_rate``, by ``md5(event_id:seed)``, so the same log
  and seed always pick the same events) of high-signal events (inbound calls, failed
  payments, sessions cancelled / no-show / rated <= 2.5), at the event's own timestamp (the
  event itself is in the features: Feast joins at-or-before t), in the same time range and
  only while the customer is active.

A (customer, t) sampled twice is kept once (``sample_reason`` says which rule came first:
snapshot, then event). Rows after a customer's cancellation are never sampled.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from core.times import DAY_US, to_us
from features.backfill import connect, load_events
from training.errors import DatasetBuildError

#: high-signal event rules: name -> SQL condition over the event log
EVENT_RULES: dict[str, str] = {
    "inbound_call": "event_type = 'inbound_call'",
    "payment_failed": "event_type = 'payment_failed'",
    "bad_session": ("event_type = 'session_completed' AND (status IN ('cancelled', 'no_show') "
                    "OR (status = 'completed' AND student_rating <= 2.5))"),
}


@dataclass(frozen=True)
class SamplingPolicy:
    cadence_days: int = 7          # snapshot every active customer every N days, at 00:00 UTC
    warmup_days: int = 14          # first snapshot: activity start + warmup (windows filled)
    event_rules: tuple[str, ...] = tuple(EVENT_RULES)
    event_rate: float = 0.25       # share of the high-signal events that become rows
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.cadence_days, int) and self.cadence_days >= 1):
            raise ValueError(f"cadence_days: expected a positive integer, got {self.cadence_days!r}")
        if not (isinstance(self.warmup_days, int) and self.warmup_days >= 0):
            raise ValueError(f"warmup_days: expected a non-negative integer, got {self.warmup_days!r}")
        unknown = sorted(set(self.event_rules) - set(EVENT_RULES))
        if unknown:
            raise ValueError(f"event_rules: unknown {unknown}; expected some of {list(EVENT_RULES)}")
        if not 0.0 <= self.event_rate <= 1.0:
            raise ValueError(f"event_rate: expected a number in [0, 1], got {self.event_rate!r}")


def _ts_series(us: np.ndarray) -> pd.Series:
    return pd.Series(pd.to_datetime(np.asarray(us, dtype=np.int64), unit="us", utc=True))


# --------------------------------------------------------------------------- the event log

def connect_events(events_uri: str, data_end: datetime | None = None):
    """A DuckDB connection with the log as view ``ev`` (column ``tsu``: microseconds), and data_end (us)."""

    con = connect(events_uri)
    end_us = load_events(con, events_uri, None if data_end is None else to_us(data_end))
    return con, end_us


def activity_start_us(con) -> int:
    """The first UTC midnight of the log's activity: the first event that is not a signup.

    (The simulator backdates signups by up to a year; behaviour starts with the simulation.)
    """
    first = con.execute("SELECT MIN(tsu) FROM ev WHERE event_type <> 'customer_signup'").fetchone()[0]
    if first is None:
        raise DatasetBuildError("the event log has no events other than signups")
    return (first // DAY_US) * DAY_US


# --------------------------------------------------------------------------- entity rows

def _customer_spans_sql() -> str:
    return """SELECT customer_id,
                     MIN(tsu) FILTER (WHERE event_type = 'customer_signup') AS signup_us,
                     MIN(tsu) FILTER (WHERE event_type = 'subscription_cancelled') AS cancel_us
              FROM ev WHERE customer_id IS NOT NULL GROUP BY customer_id"""


def sample_entities(con, policy: SamplingPolicy, first_us: int, last_us: int) -> pd.DataFrame:
    """Entity rows in [first_us, last_us]: columns customer_id, event_timestamp, sample_reason.

    Sorted by (event_timestamp, customer_id); one row per (customer, t).
    """
    if last_us < first_us:
        return pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                             "event_timestamp": _ts_series(np.array([], np.int64)),
                             "sample_reason": pd.Series([], dtype=object)})
    step = policy.cadence_days * DAY_US
    event_parts = []
    for name in policy.event_rules:
        event_parts.append(f"""SELECT e.customer_id, e.tsu AS t_us, 'event:{name}' AS reason, 1 AS prio
            FROM ev e JOIN spans s USING (customer_id)
            WHERE ({EVENT_RULES[name]}) AND e.tsu BETWEEN {first_us} AND {last_us}
              AND s.signup_us <= e.tsu AND (s.cancel_us IS NULL OR e.tsu < s.cancel_us)
              AND md5_number(e.event_id || ':' || '{int(policy.seed)}') % 1000000 < {int(round(policy.event_rate * 1e6))}""")
    union = " UNION ALL ".join([f"""SELECT s.customer_id, g.t_us, 'snapshot' AS reason, 0 AS prio
            FROM spans s, (SELECT unnest(range({first_us}, {last_us} + 1, {step})) AS t_us) g
            WHERE s.signup_us <= g.t_us AND (s.cancel_us IS NULL OR g.t_us < s.cancel_us)""", *event_parts])
    df = con.execute(f"""WITH spans AS ({_customer_spans_sql()}),
        cand AS ({union})
        SELECT customer_id, t_us, arg_min(reason, prio) AS sample_reason
        FROM cand GROUP BY customer_id, t_us ORDER BY t_us, customer_id""").df()
    return pd.DataFrame({"customer_id": df["customer_id"].astype(object),
                         "event_timestamp": _ts_series(df["t_us"].to_numpy(np.int64)),
                         "sample_reason": df["sample_reason"].astype(object)})
