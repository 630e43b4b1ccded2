"""The feature catalog: every feature of the spec, declared once.

Both engines derive from these declarations and contain no per-feature code:
the offline backfill (``features.backfill``, set-based SQL over the event
log) and the stream ingester's state (``features.state``, incremental per
event). ``docs/features.md`` is generated from here (``features.docs``).

Time semantics (DESIGN §4):
* a customer feature at time t is a function of that customer's events with
  timestamp <= t;
* the ``Nd`` window at t covers [midnight_utc(t) - (N-1) days, t]: the last N
  UTC calendar days, today included;
* tutor and marketplace features are batch snapshots taken at every UTC
  midnight d, over the N complete days [d - N days, d).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from events.contract import CATEGORIES, CHANNELS, REGIONS, SUBJECTS, TIERS
from events.filters import EventFilter, eq, events, is_true, lt, present

WINDOWS = (7, 14, 30)
FIXED_POINT = 1_000_000
MAX_WINDOW_DAYS = max(WINDOWS)
CUSTOMER_VIEW = "customer_features"
TUTOR_VIEW = "tutor_features"
MARKETPLACE_VIEW = "marketplace_features"
SUBJECT_VIEW = "subject_features"
RECENCY_VIEW = "customer_recency"
TREND_VIEW = "customer_trends"
FEATURE_SERVICE = "churn_model_v1"
MARKETPLACE_KEY = "global"  # the constant key of the marketplace entity
TUTOR_WINDOW_DAYS = 30
SUBJECT_WINDOW_DAYS = 7


# --------------------------------------------------------------------------- metrics
@dataclass(frozen=True)
class Metric:
    """A per-customer quantity accumulated from events into daily tiles.

    ``value`` is the summed field (None counts events). ``per_day="any"``
    makes the daily tile 1 if any matching event happened that day, else 0.
    """

    name: str
    source: EventFilter
    value: str | None = None
    per_day: str = "sum"
    integer: bool = True

    @property
    def scale(self) -> int:
        """Fractional values are accumulated as integers in millionths (fixed point): both engines
        then sum exact integers, so they agree bit for bit and an emptied window is exactly 0."""
        return 1 if self.integer else FIXED_POINT

    def describe(self) -> str:
        what = f"sum of `{self.value}`" if self.value else "number"
        if self.per_day == "any":
            return f"number of distinct UTC days with at least one event among {self.source.describe()}"
        return f"{what} of events {self.source.describe()}"


_completed = eq("status", "completed")
METRICS: tuple[Metric, ...] = (
    Metric("scheduled", events("session_completed")),
    Metric("completed", events("session_completed", where=_completed)),
    Metric("cancelled", events("session_completed", where=eq("status", "cancelled"))),
    Metric("no_show", events("session_completed", where=eq("status", "no_show"))),
    Metric("rating_sum", events("session_completed", where=(_completed, present("student_rating"))),
           value="student_rating", integer=False),
    Metric("rating_n", events("session_completed", where=(_completed, present("student_rating")))),
    Metric("duration_sum", events("session_completed", where=(_completed, present("duration_minutes"))),
           value="duration_minutes", integer=False),
    Metric("duration_n", events("session_completed", where=(_completed, present("duration_minutes")))),
    Metric("calls", events("inbound_call")),
    Metric("call_seconds", events("inbound_call"), value="duration_seconds", integer=False),
    Metric("negative_calls", events("inbound_call", where=lt("sentiment_score", -0.3))),
    Metric("escalations", events("inbound_call", where=is_true("escalated"))),
    Metric("logins", events("login")),
    Metric("messages", events("message_sent")),
    # Activity = something the customer did on the platform themselves (billing runs unattended).
    Metric("active_day", events("login", "message_sent", "booking_request"), per_day="any"),
    Metric("payments_ok", events("payment_succeeded")),
    Metric("payment_attempts", events("payment_succeeded", "payment_failed")),
    Metric("payment_amount", events("payment_succeeded"), value="amount", integer=False),
    Metric("referrals", events("referral_made")),
)
METRIC_BY_NAME = {m.name: m for m in METRICS}


# --------------------------------------------------------------------------- customer features
@dataclass(frozen=True)
class WindowSum:
    """Sum of a metric over the ``days`` window, times ``scale`` (1/days for a per-day frequency)."""

    name: str
    metric: str
    days: int
    per_day: bool = False
    category: str = "window"

    @property
    def dtype(self) -> str:
        return "int64" if METRIC_BY_NAME[self.metric].integer and not self.per_day else "float64"

    nullable = False
    kind = "count"

    def describe(self) -> str:
        m = METRIC_BY_NAME[self.metric].describe()
        s = f"{m}, over the last {self.days} UTC days (today included)"
        return (s + f", divided by {self.days}") if self.per_day else s


@dataclass(frozen=True)
class WindowRatio:
    """num / den over the window; null when den is 0 (no data is not zero)."""

    name: str
    num: str
    den: str
    days: int
    category: str = "window"
    dtype = "float64"
    nullable = True
    bounded: bool = False  # True for rates in [0, 1]

    @property
    def kind(self) -> str:
        return "rate" if self.bounded else "numeric"

    def describe(self) -> str:
        return (f"({METRIC_BY_NAME[self.num].describe()}) / ({METRIC_BY_NAME[self.den].describe()}), "
                f"both over the last {self.days} UTC days (today included); null when the denominator is 0")


@dataclass(frozen=True)
class LifetimeSum:
    """``model_input=False``: stored and served to the on-demand views only (a count that grows with
    tenure: under a time split the test rows' values lie beyond the training rows', docs/model.md)."""

    name: str
    metric: str
    category: str = "lifetime"
    model_input: bool = True
    nullable = False
    kind = "count"

    @property
    def dtype(self) -> str:
        return "int64" if METRIC_BY_NAME[self.metric].integer else "float64"

    def describe(self) -> str:
        return f"{METRIC_BY_NAME[self.metric].describe()}, over the customer's whole history up to t"


@dataclass(frozen=True)
class LifetimeRatio:
    name: str
    num: str
    den: str
    category: str = "lifetime"
    dtype = "float64"
    nullable = True
    kind = "numeric"

    def describe(self) -> str:
        return (f"({METRIC_BY_NAME[self.num].describe()}) / ({METRIC_BY_NAME[self.den].describe()}), "
                "over the whole history up to t; null when the denominator is 0")


@dataclass(frozen=True)
class FirstAbove:
    """Whether the first non-null ``field`` among matching events exceeds ``threshold``; null before one."""

    name: str
    source: EventFilter
    field: str
    threshold: float
    category: str = "lifetime"
    dtype = "bool"
    nullable = True
    kind = "boolean"

    def describe(self) -> str:
        return (f"true if `{self.field}` of the first event {self.source.describe()} with `{self.field}` present "
                f"(earliest timestamp, then smallest event_id) is > {self.threshold}; null until there is one")


@dataclass(frozen=True)
class LatestValue:
    """The latest non-null ``field`` among matching events (ties: largest event_id)."""

    name: str
    source: EventFilter
    field: str
    dtype: str = "string"
    categories: tuple = ()
    category: str = "segment"
    nullable = True

    @property
    def kind(self) -> str:
        return "categorical" if self.dtype == "string" else "numeric"

    def describe(self) -> str:
        return f"`{self.field}` of the latest event {self.source.describe()}; null until there is one"


@dataclass(frozen=True)
class LastSeen:
    """Timestamp of the latest matching event (input of a time-since feature).

    Stored as integer microseconds since the epoch: Feast's online timestamp type keeps whole
    seconds only, which would break exact online/offline parity of the time-since features.
    """

    name: str
    source: EventFilter
    category: str = "recency"
    dtype = "int64"
    nullable = True
    kind = "timestamp_us"

    def describe(self) -> str:
        return (f"timestamp of the latest event {self.source.describe()}, as microseconds since the epoch (UTC); "
                "null until there is one")


@dataclass(frozen=True)
class PrimaryKey:
    """The ``field`` value with the most matching events over the whole history.

    Ties go to the value that most recently reached the top count, so the
    incremental rule is: count[v] += 1; if count[v] >= top: primary = v.
    """

    name: str
    source: EventFilter
    field: str
    category: str = "tutor"
    dtype = "string"
    nullable = True
    kind = "categorical"

    def describe(self) -> str:
        return (f"the `{self.field}` with the most events {self.source.describe()} over the whole history; "
                "ties go to the one that reached the top count most recently; null before the first")


@dataclass(frozen=True)
class PrimaryShare:
    """Events of the primary value / all matching events (the same source as the PrimaryKey)."""

    name: str
    primary: str
    total_metric: str
    category: str = "tutor"
    dtype = "float64"
    nullable = True
    kind = "rate"

    def describe(self) -> str:
        return (f"number of events counted for `{self.primary}` (the primary's count) divided by "
                f"{METRIC_BY_NAME[self.total_metric].describe()} over the whole history; null when 0")


@dataclass(frozen=True)
class DistinctInWindow:
    name: str
    source: EventFilter
    field: str
    days: int
    category: str = "tutor"
    dtype = "int64"
    nullable = False
    kind = "count"

    def describe(self) -> str:
        return (f"number of distinct `{self.field}` values among events {self.source.describe()} "
                f"in the last {self.days} UTC days (today included)")


CustomerFeature = Union[WindowSum, WindowRatio, LifetimeSum, LifetimeRatio, FirstAbove, LatestValue,
                        LastSeen, PrimaryKey, PrimaryShare, DistinctInWindow]


def _window_features() -> list[CustomerFeature]:
    out: list[CustomerFeature] = []
    for n in WINDOWS:
        w = f"{n}d"
        out += [
            WindowSum(f"session_count_{w}", "completed", n),
            WindowSum(f"session_frequency_{w}", "completed", n, per_day=True),
            WindowRatio(f"avg_session_rating_{w}", "rating_sum", "rating_n", n),
            WindowRatio(f"session_completion_rate_{w}", "completed", "scheduled", n, bounded=True),
            WindowRatio(f"cancellation_rate_{w}", "cancelled", "scheduled", n, bounded=True),
            WindowRatio(f"no_show_rate_{w}", "no_show", "scheduled", n, bounded=True),
            WindowRatio(f"avg_session_duration_{w}", "duration_sum", "duration_n", n),
            WindowSum(f"ib_call_count_{w}", "calls", n),
            WindowRatio(f"avg_call_duration_{w}", "call_seconds", "calls", n),
            WindowSum(f"negative_sentiment_calls_{w}", "negative_calls", n),
            WindowSum(f"escalation_count_{w}", "escalations", n),
            WindowSum(f"login_count_{w}", "logins", n),
            WindowSum(f"message_count_{w}", "messages", n),
            WindowSum(f"days_active_{w}", "active_day", n),
            WindowRatio(f"payment_success_rate_{w}", "payments_ok", "payment_attempts", n, bounded=True),
            WindowSum(f"payment_amount_{w}", "payment_amount", n),
        ]
    return out


_signup = events("customer_signup")
_completed_sessions = events("session_completed", where=_completed)
CUSTOMER_FEATURES: tuple[CustomerFeature, ...] = tuple(_window_features()) + (
    # lifetime
    LifetimeSum("total_sessions_lifetime", "completed"),
    LifetimeSum("total_spend_lifetime", "payment_amount"),
    LifetimeSum("referral_count", "referrals"),
    # lifetime counts for the per-tenure-day rates (``ON_DEMAND``): 30-day windows see a month; a
    # customer's long-run level needs the whole history
    LifetimeSum("total_rated_sessions_lifetime", "rating_n", model_input=False),
    LifetimeSum("total_messages_lifetime", "messages", model_input=False),
    LifetimeSum("total_logins_lifetime", "logins", model_input=False),
    LifetimeSum("total_ib_calls_lifetime", "calls", model_input=False),
    LifetimeSum("total_active_days_lifetime", "active_day", model_input=False),
    LifetimeSum("total_cancellations_lifetime", "cancelled", model_input=False),
    LifetimeSum("total_no_shows_lifetime", "no_show", model_input=False),
    LifetimeSum("total_negative_calls_lifetime", "negative_calls", model_input=False),
    LifetimeSum("total_escalations_lifetime", "escalations", model_input=False),
    LifetimeSum("total_payment_attempts_lifetime", "payment_attempts", model_input=False),
    LifetimeSum("total_payments_ok_lifetime", "payments_ok", model_input=False),
    LifetimeRatio("avg_lifetime_rating", "rating_sum", "rating_n"),
    FirstAbove("first_session_was_success", _completed_sessions, "student_rating", 4.0),
    # segment (subscription_tier is the spec's lifetime feature; ordinal-encoded by the model)
    LatestValue("subscription_tier", _signup, "tier", categories=TIERS, category="lifetime"),
    LatestValue("acquisition_channel", _signup, "acquisition_channel", categories=CHANNELS),
    LatestValue("student_grade_level", _signup, "grade_level", dtype="int64"),
    LatestValue("primary_subject_category", _signup, "subject_category", categories=CATEGORIES),
    LatestValue("geographic_region", _signup, "region", categories=REGIONS),
    # the key of the subject lookup (DESIGN §4.9), like primary_tutor_id for the tutor view
    LatestValue("primary_subject", _signup, "primary_subject", categories=SUBJECTS, category="subject"),
    # inputs of the request-time recency features
    LastSeen("signup_ts", _signup),
    LastSeen("last_session_ts", _completed_sessions),
    LastSeen("last_login_ts", events("login")),
    LastSeen("last_payment_ts", events("payment_succeeded")),
    LastSeen("last_ib_call_ts", events("inbound_call")),
    # tutor consistency
    PrimaryKey("primary_tutor_id", _completed_sessions, "tutor_id"),
    PrimaryShare("tutor_consistency_score", "primary_tutor_id", "completed"),
    DistinctInWindow("tutor_switch_count_30d", _completed_sessions, "tutor_id", 30),
)


# --------------------------------------------------------------------------- batch (tutor, subject) features
@dataclass(frozen=True)
class GroupMetric:
    """A per-group (tutor or subject) quantity over a window of complete days.

    ``value``: summed field (None counts events); ``distinct``: count distinct values of that field.
    """

    name: str
    source: EventFilter
    group_by: str
    value: str | None = None
    distinct: str | None = None

    def describe(self) -> str:
        if self.distinct:
            return f"number of distinct `{self.distinct}` among events {self.source.describe()}"
        return (f"sum of `{self.value}`" if self.value else "number") + f" of events {self.source.describe()}"


@dataclass(frozen=True)
class GroupFeature:
    """num (or num/den, null when den is 0) over the ``days`` complete UTC days before the snapshot."""

    name: str
    num: str
    days: int
    den: str | None = None
    scale: float = 1.0
    doc: str = ""
    nullable: bool = True
    bounded: bool = False

    @property
    def dtype(self) -> str:
        return "int64" if self.den is None and self.scale == 1.0 else "float64"

    @property
    def kind(self) -> str:
        return "count" if self.den is None else ("rate" if self.bounded else "numeric")


TUTOR_METRICS: tuple[GroupMetric, ...] = (
    GroupMetric("t_rating_sum", events("session_completed", where=(_completed, present("student_rating"))),
                "tutor_id", value="student_rating"),
    GroupMetric("t_rating_n", events("session_completed", where=(_completed, present("student_rating"))),
                "tutor_id"),
    GroupMetric("t_response_minutes", events("tutor_response"), "tutor_id", value="response_time_minutes"),
    GroupMetric("t_responses", events("tutor_response"), "tutor_id"),
    GroupMetric("t_scheduled", events("session_completed"), "tutor_id"),
    GroupMetric("t_tutor_cancelled", events("session_completed", where=(eq("status", "cancelled"),
                                                                       eq("cancelled_by", "tutor"))), "tutor_id"),
)
TUTOR_FEATURES: tuple[GroupFeature, ...] = (
    GroupFeature("tutor_avg_rating_30d", "t_rating_sum", TUTOR_WINDOW_DAYS, den="t_rating_n",
                 doc="the tutor's mean session rating (spec: primary_tutor_rating)"),
    GroupFeature("tutor_avg_response_minutes_30d", "t_response_minutes", TUTOR_WINDOW_DAYS, den="t_responses",
                 doc="the tutor's mean response time in minutes (spec: avg_tutor_response_time)"),
    GroupFeature("tutor_cancellation_rate_30d", "t_tutor_cancelled", TUTOR_WINDOW_DAYS, den="t_scheduled",
                 bounded=True, doc="sessions the tutor cancelled / sessions scheduled with the tutor "
                                   "(spec: tutor_cancellation_rate)"),
)

SUBJECT_METRICS: tuple[GroupMetric, ...] = (
    GroupMetric("s_tutors", events("tutor_availability"), "subject", distinct="tutor_id"),
    GroupMetric("s_requests", events("booking_request"), "subject"),
    GroupMetric("s_match_minutes", events("booking_matched"), "subject", value="time_to_match_minutes"),
    GroupMetric("s_matches", events("booking_matched"), "subject"),
    GroupMetric("s_booked_minutes", events("session_completed", where=(_completed, present("duration_minutes"))),
                "subject", value="duration_minutes"),
    GroupMetric("s_available_hours", events("tutor_availability"), "subject", value="available_hours"),
)
# Per subject; the column is f"{name}_{subject}". "Pending requests" is read as demand: the booking
# requests made in the window (the event log has no queue state to count).
SUBJECT_FEATURES: tuple[GroupFeature, ...] = (
    GroupFeature("supply_demand_ratio", "s_tutors", SUBJECT_WINDOW_DAYS, den="s_requests",
                 doc="distinct tutors offering the subject / booking requests for it"),
    GroupFeature("avg_match_time", "s_match_minutes", SUBJECT_WINDOW_DAYS, den="s_matches",
                 doc="mean minutes from booking request to match"),
    GroupFeature("utilization_rate", "s_booked_minutes", SUBJECT_WINDOW_DAYS, den="s_available_hours", scale=1 / 60,
                 doc="hours of completed sessions / hours tutors made available (can exceed 1 when tutors "
                     "teach beyond what they published)"),
    GroupFeature("tutor_count", "s_tutors", SUBJECT_WINDOW_DAYS, nullable=False,
                 doc="distinct tutors who published availability for the subject"),
)


def subject_columns() -> list[tuple[str, GroupFeature, str]]:
    """(column, feature, subject) for every per-subject marketplace column."""
    return [(f"{f.name}_{s}", f, s) for f in SUBJECT_FEATURES for s in SUBJECTS]


SUBJECT_FEATURE_PREFIX = "subject_"


def subject_view_columns() -> list[tuple[str, GroupFeature]]:
    """(column, feature) of the subject view: the same per-subject values as the marketplace
    columns, one row per subject (a customer's own subject is looked up by ``primary_subject``)."""
    return [(SUBJECT_FEATURE_PREFIX + f.name, f) for f in SUBJECT_FEATURES]


# --------------------------------------------------------------------------- request-time features
@dataclass(frozen=True)
class OnDemand:
    """Computed at request time by a Feast on-demand view (``evaluate_on_demand``).

    ``op``: ``days_since`` / ``whole_days_since`` (request time - a stored timestamp, in days),
    ``per_tenure_day`` (inputs[0] / (whole days since the timestamp inputs[-1], plus 1: the signup
    day counts); with three inputs (inputs[0] - inputs[1]) / that), ``per_day_change`` (inputs[0] / divisors[0] - inputs[1] / divisors[1]) or
    ``difference`` (inputs[0] - inputs[1]). A missing input gives null.
    """

    name: str
    view: str
    op: str
    inputs: tuple[str, ...]
    category: str
    divisors: tuple[int, ...] = ()
    dtype: str = "float64"
    nullable: bool = True
    kind: str = "numeric"

    @property
    def formula(self) -> str:
        a = self.inputs[0]
        if self.op == "days_since":
            return f"(request time - {a}) in days"
        if self.op == "whole_days_since":
            return f"floor((request time - {a}) in days)"
        b = self.inputs[1]
        if self.op == "per_tenure_day":
            num = a if len(self.inputs) == 2 else f"({a} - {b})"
            return f"{num} / (floor((request time - {self.inputs[-1]}) in days) + 1)"
        if self.op == "per_day_change":
            return f"{a} / {self.divisors[0]} - {b} / {self.divisors[1]}"
        return f"{a} - {b} (null if either is)"


# The request time as integer microseconds since the epoch: Feast's online timestamp type would
# truncate it to whole seconds and the time-since features would differ from offline.
REQUEST_TIME_FIELD = "request_time_us"
ON_DEMAND: tuple[OnDemand, ...] = (
    OnDemand("days_since_last_session", RECENCY_VIEW, "days_since", ("last_session_ts",), "recency"),
    OnDemand("days_since_last_login", RECENCY_VIEW, "days_since", ("last_login_ts",), "recency"),
    OnDemand("days_since_last_payment", RECENCY_VIEW, "days_since", ("last_payment_ts",), "recency"),
    OnDemand("days_since_last_ib_call", RECENCY_VIEW, "days_since", ("last_ib_call_ts",), "recency"),
    OnDemand("days_since_signup", RECENCY_VIEW, "days_since", ("signup_ts",), "recency"),
    OnDemand("customer_tenure_days", RECENCY_VIEW, "whole_days_since", ("signup_ts",), "lifetime"),
    *(OnDemand(f"{what}_per_tenure_day", RECENCY_VIEW, "per_tenure_day", (total, "signup_ts"), "lifetime")
      for what, total in (("sessions", "total_sessions_lifetime"), ("rated_sessions", "total_rated_sessions_lifetime"),
                          ("messages", "total_messages_lifetime"), ("logins", "total_logins_lifetime"),
                          ("ib_calls", "total_ib_calls_lifetime"), ("active_days", "total_active_days_lifetime"),
                          ("cancellations", "total_cancellations_lifetime"), ("no_shows", "total_no_shows_lifetime"),
                          ("negative_calls", "total_negative_calls_lifetime"),
                          ("escalations", "total_escalations_lifetime"), ("referrals", "referral_count"))),
    OnDemand("payment_failures_per_tenure_day", RECENCY_VIEW, "per_tenure_day",
             ("total_payment_attempts_lifetime", "total_payments_ok_lifetime", "signup_ts"), "lifetime"),
    OnDemand("session_velocity_change", TREND_VIEW, "per_day_change", ("session_count_7d", "session_count_30d"),
             "trend", divisors=(7, 30)),
    OnDemand("rating_trend", TREND_VIEW, "difference", ("avg_session_rating_7d", "avg_session_rating_30d"), "trend"),
    OnDemand("engagement_trend", TREND_VIEW, "difference", ("login_count_7d", "login_count_14d"), "trend"),
    OnDemand("spend_acceleration", TREND_VIEW, "per_day_change", ("payment_amount_7d", "payment_amount_30d"),
             "trend", divisors=(7, 30)),
)


def evaluate_on_demand(view: str, inputs: dict) -> dict:
    """The body of the on-demand view ``view``: dict of input lists in, dict of output lists out.

    The same code runs for Feast's online and offline retrieval and for the fast online path;
    float64 throughout, NaN where an input is missing.
    """
    nan = float("nan")

    def us(v):  # integer microseconds since the epoch, or None (offline nulls may arrive as NaN)
        return None if v is None or v != v else int(v)

    def num(v):
        return nan if v is None else float(v)

    def days(now, then):  # (now - then) in ns as float64 / 1e9 / 86400: pandas' total_seconds path
        return nan if now is None or then is None else float((now - then) * 1000) / 1e9 / 86400.0

    out: dict[str, list] = {}
    now = [us(v) for v in inputs[REQUEST_TIME_FIELD]] if REQUEST_TIME_FIELD in inputs else None
    since: dict[str, list] = {}  # timestamp input -> days since it (shared by the features reading it)

    def days_since(name):
        if name not in since:
            since[name] = [days(n, us(v)) for n, v in zip(now, inputs[name])]
        return since[name]

    for f in ON_DEMAND:
        if f.view != view:
            continue
        if f.op in ("days_since", "whole_days_since"):
            col = days_since(f.inputs[0])
            out[f.name] = list(col) if f.op == "days_since" else [float(int(d // 1)) if d == d else d for d in col]
        elif f.op == "per_tenure_day":
            count = ([num(a) for a in inputs[f.inputs[0]]] if len(f.inputs) == 2 else
                     [num(a) - num(b) for a, b in zip(inputs[f.inputs[0]], inputs[f.inputs[1]])])
            out[f.name] = [c / (int(d // 1) + 1) if d == d and d >= 0 else nan
                           for c, d in zip(count, days_since(f.inputs[-1]))]
        elif f.op == "per_day_change":
            da, db = f.divisors
            out[f.name] = [num(a) / da - num(b) / db for a, b in zip(inputs[f.inputs[0]], inputs[f.inputs[1]])]
        elif f.op == "difference":
            out[f.name] = [num(a) - num(b) for a, b in zip(inputs[f.inputs[0]], inputs[f.inputs[1]])]
        else:  # pragma: no cover
            raise ValueError(f"{f.name}: unknown on-demand op {f.op!r}")
    return out


# --------------------------------------------------------------------------- the model's input vector
# The stored last-seen timestamps and the lifetime counts declared model_input=False only feed the
# recency views; the primary tutor id and the primary subject are lookup keys (of the tutor and
# subject views).
_NOT_MODEL_INPUTS = ({f.name for f in CUSTOMER_FEATURES if isinstance(f, LastSeen)}
                     | {"primary_tutor_id", "primary_subject"}
                     | {f.name for f in CUSTOMER_FEATURES if isinstance(f, LifetimeSum) and not f.model_input})
# The schema kind of the 80 wide per-subject marketplace columns. They are the same for every
# customer at a given time, so under a time split they mostly identify the date and the net
# overfits on them (docs/model.md). They stay in the feature service (the spec lists them) and in
# the inference contract; the preprocessing validates them (a number or null) and drops them.
# The customer's own subject's values come from the subject view instead.
CONTEXT_KIND = "context"


def model_features() -> list[dict]:
    """The feature service's columns with the kind the model's preprocessing needs."""
    out = []
    for f in CUSTOMER_FEATURES:
        if f.name in _NOT_MODEL_INPUTS:
            continue
        entry = {"name": f.name, "view": CUSTOMER_VIEW}
        if isinstance(f, LatestValue) and f.name == "subscription_tier":
            entry.update(kind="ordinal", categories=list(f.categories))
        elif isinstance(f, LatestValue) and f.dtype == "string":
            entry.update(kind="categorical", categories=list(f.categories))
        elif f.dtype == "bool":
            entry.update(kind="boolean")
        else:
            entry.update(kind="numeric")
        out.append(entry)
    out += [{"name": f.name, "view": TUTOR_VIEW, "kind": "numeric"} for f in TUTOR_FEATURES]
    out += [{"name": c, "view": SUBJECT_VIEW, "kind": "numeric"} for c, _ in subject_view_columns()]
    out += [{"name": c, "view": MARKETPLACE_VIEW, "kind": CONTEXT_KIND} for c, _, _ in subject_columns()]
    out += [{"name": f.name, "view": f.view, "kind": "numeric"} for f in ON_DEMAND]
    return out


def model_input_schema() -> dict:
    return {"feature_service": FEATURE_SERVICE,
            "features": [{k: v for k, v in f.items() if k != "view"} for f in model_features()]}


# --------------------------------------------------------------------------- data-quality specs
def column_specs(view: str | None = None) -> list[dict]:
    """Column rules of a snapshot table for the validation suites (validation.specs.ColumnSpec fields).

    Counts are >= 0, bounded rates lie in [0, 1], and only features whose null rule allows it
    may be null. ``view`` defaults to the customer view.
    """
    view = view or CUSTOMER_VIEW
    if view == CUSTOMER_VIEW:
        feats = [(f.name, f) for f in CUSTOMER_FEATURES]
    elif view == TUTOR_VIEW:
        feats = [(f.name, f) for f in TUTOR_FEATURES]
    elif view == MARKETPLACE_VIEW:
        feats = [(c, f) for c, f, _ in subject_columns()]
    elif view == SUBJECT_VIEW:
        feats = subject_view_columns()
    else:
        raise ValueError(f"view: expected one of {CUSTOMER_VIEW}, {TUTOR_VIEW}, {SUBJECT_VIEW}, {MARKETPLACE_VIEW}; "
                         f"got {view!r}")
    specs = []
    for name, f in feats:
        spec = {"name": name, "nullable": f.nullable}
        kind = f.kind
        if kind == "timestamp_us":
            spec.update(kind="numeric", min=0)
        elif kind in ("count", "rate"):
            spec.update(kind=kind)
        elif kind == "categorical":
            spec.update(kind="categorical")
            if getattr(f, "categories", ()):
                spec["values"] = list(f.categories)
        elif kind == "boolean":
            spec.update(kind="boolean")
        else:
            spec.update(kind="numeric")
            if isinstance(f, (WindowSum, WindowRatio, LifetimeRatio, GroupFeature)) or name.startswith("avg_"):
                spec["min"] = 0
        specs.append(spec)
    return specs


ENTITY_KEYS = {CUSTOMER_VIEW: "customer_id", TUTOR_VIEW: "tutor_id", SUBJECT_VIEW: "subject",
               MARKETPLACE_VIEW: "marketplace_id"}
# The daily batch views (materialized at each UTC midnight; never written by the stream).
BATCH_VIEWS = (TUTOR_VIEW, SUBJECT_VIEW, MARKETPLACE_VIEW)
