"""Every feature of the spec, declared once, grouped by the spec's categories.

Declarations only: the kinds are in ``features.kinds``, what is derived from
these (model inputs, validation specs) in ``features.derivations``, the
request-time functions in ``features.on_demand``. Both engines (the backfill,
``features.backfill``, and the stream state, ``features.state``) and
docs/features.md (``features.docs``) are generated from this file.

Time semantics (docs/features.md):
* a customer feature at time t is a function of that customer's events with
  timestamp <= t;
* the ``Nd`` window at t covers [midnight_utc(t) - (N-1) days, t]: the last N
  UTC calendar days, today included;
* tutor and subject features are batch snapshots taken at every UTC midnight d,
  over the N complete days [d - N days, d).

The order of ``CUSTOMER_FEATURES``, ``TUTOR_FEATURES``, ``SUBJECT_FEATURES`` and
``ON_DEMAND`` is the column order of the stored tables and of the model's input
schema: the categories below are assembled into them at the end of the file, in
that fixed order; add new features at the end of a tuple's last part.
"""
from __future__ import annotations

from events.contract import CATEGORIES, CHANNELS, REGIONS, SUBJECTS, TIERS
from events.filters import eq, events, is_true, lt, present

from .kinds import (
    CustomerFeature,
    DistinctInWindow,
    FirstAbove,
    GroupFeature,
    GroupMetric,
    LastSeen,
    LatestValue,
    LifetimeRatio,
    LifetimeSum,
    Metric,
    OnDemand,
    PrimaryKey,
    PrimaryShare,
    WindowRatio,
    WindowSum,
)

# --------------------------------------------------------------------------- views and constants
CUSTOMER_VIEW = "customer_features"
TUTOR_VIEW = "tutor_features"
SUBJECT_VIEW = "subject_features"
MARKETPLACE_VIEW = "marketplace_features"
RECENCY_VIEW = "customer_recency"     # on-demand
TREND_VIEW = "customer_trends"        # on-demand
FEATURE_SERVICE = "churn_model_v1"
ENTITY_KEYS = {CUSTOMER_VIEW: "customer_id", TUTOR_VIEW: "tutor_id", SUBJECT_VIEW: "subject",
               MARKETPLACE_VIEW: "marketplace_id"}
MARKETPLACE_KEY = "global"  # the constant key of the marketplace entity
# The daily batch views (materialized at each UTC midnight; never written by the stream).
BATCH_VIEWS = (TUTOR_VIEW, SUBJECT_VIEW, MARKETPLACE_VIEW)
# The request time as integer microseconds since the epoch: Feast's online timestamp type would
# truncate it to whole seconds and the time-since features would differ from offline.
REQUEST_TIME_FIELD = "request_time_us"
# The customer's age in whole days at request time (declared in the lifetime on-demand features below):
# drift compares the features that grow with tenure at a matching tenure.
TENURE_FEATURE = "customer_tenure_days"

WINDOWS = (7, 14, 30)
MAX_WINDOW_DAYS = max(WINDOWS)
TUTOR_WINDOW_DAYS = 30
SUBJECT_WINDOW_DAYS = 7

# --------------------------------------------------------------------------- sources
_held = eq("status", "completed")
_signup = events("customer_signup")
_sessions = events("session_completed")
_completed_sessions = events("session_completed", where=_held)
_rated_sessions = events("session_completed", where=(_held, present("student_rating")))
_timed_sessions = events("session_completed", where=(_held, present("duration_minutes")))
_calls = events("inbound_call")

# --------------------------------------------------------------------------- customer metrics (daily tiles)
scheduled = Metric("scheduled", _sessions)
completed = Metric("completed", _completed_sessions)
cancelled = Metric("cancelled", events("session_completed", where=eq("status", "cancelled")))
no_show = Metric("no_show", events("session_completed", where=eq("status", "no_show")))
rating_sum = Metric("rating_sum", _rated_sessions, value="student_rating", integer=False)
rating_n = Metric("rating_n", _rated_sessions)
duration_sum = Metric("duration_sum", _timed_sessions, value="duration_minutes", integer=False)
duration_n = Metric("duration_n", _timed_sessions)
calls = Metric("calls", _calls)
call_seconds = Metric("call_seconds", _calls, value="duration_seconds", integer=False)
negative_calls = Metric("negative_calls", events("inbound_call", where=lt("sentiment_score", -0.3)))
escalations = Metric("escalations", events("inbound_call", where=is_true("escalated")))
logins = Metric("logins", events("login"))
messages = Metric("messages", events("message_sent"))
# Activity = something the customer did on the platform themselves (billing runs unattended).
active_day = Metric("active_day", events("login", "message_sent", "booking_request"), per_day="any")
payments_ok = Metric("payments_ok", events("payment_succeeded"))
payment_attempts = Metric("payment_attempts", events("payment_succeeded", "payment_failed"))
payment_amount = Metric("payment_amount", events("payment_succeeded"), value="amount", integer=False)
referrals = Metric("referrals", events("referral_made"))

METRICS: tuple[Metric, ...] = (
    scheduled, completed, cancelled, no_show, rating_sum, rating_n, duration_sum, duration_n, calls,
    call_seconds, negative_calls, escalations, logins, messages, active_day, payments_ok,
    payment_attempts, payment_amount, referrals,
)


# --------------------------------------------------------------------------- 1. time-window aggregations
def _windowed(n: int) -> tuple[CustomerFeature, ...]:
    w = f"{n}d"
    return (
        WindowSum(f"session_count_{w}", completed, n),
        WindowSum(f"session_frequency_{w}", completed, n, per_day=True),
        WindowRatio(f"avg_session_rating_{w}", rating_sum, rating_n, n),
        WindowRatio(f"session_completion_rate_{w}", completed, scheduled, n, bounded=True),
        WindowRatio(f"cancellation_rate_{w}", cancelled, scheduled, n, bounded=True),
        WindowRatio(f"no_show_rate_{w}", no_show, scheduled, n, bounded=True),
        WindowRatio(f"avg_session_duration_{w}", duration_sum, duration_n, n),
        WindowSum(f"ib_call_count_{w}", calls, n),
        WindowRatio(f"avg_call_duration_{w}", call_seconds, calls, n),
        WindowSum(f"negative_sentiment_calls_{w}", negative_calls, n),
        WindowSum(f"escalation_count_{w}", escalations, n),
        WindowSum(f"login_count_{w}", logins, n),
        WindowSum(f"message_count_{w}", messages, n),
        WindowSum(f"days_active_{w}", active_day, n),
        WindowRatio(f"payment_success_rate_{w}", payments_ok, payment_attempts, n, bounded=True),
        WindowSum(f"payment_amount_{w}", payment_amount, n),
    )


_WINDOW = tuple(f for n in WINDOWS for f in _windowed(n))

# --------------------------------------------------------------------------- 2. recency
# Stored: the last-seen timestamps. At request time: the days since them.
_RECENCY_INPUTS: tuple[CustomerFeature, ...] = (
    LastSeen("signup_ts", _signup),
    LastSeen("last_session_ts", _completed_sessions),
    LastSeen("last_login_ts", events("login")),
    LastSeen("last_payment_ts", events("payment_succeeded")),
    LastSeen("last_ib_call_ts", _calls),
)
_RECENCY_NOW: tuple[OnDemand, ...] = (
    OnDemand("days_since_last_session", RECENCY_VIEW, "days_since", ("last_session_ts",), "recency"),
    OnDemand("days_since_last_login", RECENCY_VIEW, "days_since", ("last_login_ts",), "recency"),
    OnDemand("days_since_last_payment", RECENCY_VIEW, "days_since", ("last_payment_ts",), "recency"),
    OnDemand("days_since_last_ib_call", RECENCY_VIEW, "days_since", ("last_ib_call_ts",), "recency"),
    OnDemand("days_since_signup", RECENCY_VIEW, "days_since", ("signup_ts",), "recency", grows_with_tenure=True),
)

# --------------------------------------------------------------------------- 3. lifetime
_LIFETIME: tuple[CustomerFeature, ...] = (
    LifetimeSum("total_sessions_lifetime", completed),
    LifetimeSum("total_spend_lifetime", payment_amount),
    LifetimeSum("referral_count", referrals),
    # lifetime counts for the per-tenure-day rates below: 30-day windows see a month; a customer's
    # long-run level needs the whole history
    LifetimeSum("total_rated_sessions_lifetime", rating_n, model_input=False),
    LifetimeSum("total_messages_lifetime", messages, model_input=False),
    LifetimeSum("total_logins_lifetime", logins, model_input=False),
    LifetimeSum("total_ib_calls_lifetime", calls, model_input=False),
    LifetimeSum("total_active_days_lifetime", active_day, model_input=False),
    LifetimeSum("total_cancellations_lifetime", cancelled, model_input=False),
    LifetimeSum("total_no_shows_lifetime", no_show, model_input=False),
    LifetimeSum("total_negative_calls_lifetime", negative_calls, model_input=False),
    LifetimeSum("total_escalations_lifetime", escalations, model_input=False),
    LifetimeSum("total_payment_attempts_lifetime", payment_attempts, model_input=False),
    LifetimeSum("total_payments_ok_lifetime", payments_ok, model_input=False),
    LifetimeRatio("avg_lifetime_rating", rating_sum, rating_n),
    FirstAbove("first_session_was_success", _completed_sessions, "student_rating", 4.0),
    LatestValue("subscription_tier", _signup, "tier", categories=TIERS, category="lifetime", ordinal=True),
)
_LIFETIME_NOW: tuple[OnDemand, ...] = (
    OnDemand(TENURE_FEATURE, RECENCY_VIEW, "whole_days_since", ("signup_ts",), "lifetime", grows_with_tenure=True),
    *(OnDemand(f"{what}_per_tenure_day", RECENCY_VIEW, "per_tenure_day", (total, "signup_ts"), "lifetime")
      for what, total in (("sessions", "total_sessions_lifetime"), ("rated_sessions", "total_rated_sessions_lifetime"),
                          ("messages", "total_messages_lifetime"), ("logins", "total_logins_lifetime"),
                          ("ib_calls", "total_ib_calls_lifetime"), ("active_days", "total_active_days_lifetime"),
                          ("cancellations", "total_cancellations_lifetime"), ("no_shows", "total_no_shows_lifetime"),
                          ("negative_calls", "total_negative_calls_lifetime"),
                          ("escalations", "total_escalations_lifetime"), ("referrals", "referral_count"))),
    OnDemand("payment_failures_per_tenure_day", RECENCY_VIEW, "per_tenure_day",
             ("total_payment_attempts_lifetime", "total_payments_ok_lifetime", "signup_ts"), "lifetime"),
)

# Lifetime counts per active day: a ratio of two totals over the same history, so it does not depend on
# how much of the customer's history the log holds (a per-tenure-day rate falls when the log starts after
# the signup, and rises as the log grows: under a time split that shifts between train and test).
_LIFETIME_PER_ACTIVE_DAY: tuple[CustomerFeature, ...] = tuple(
    LifetimeRatio(f"{what}_per_active_day", metric, active_day)
    for what, metric in (("sessions", completed), ("rated_sessions", rating_n), ("messages", messages),
                         ("logins", logins), ("ib_calls", calls), ("cancellations", cancelled),
                         ("no_shows", no_show), ("negative_calls", negative_calls), ("escalations", escalations)))

# --------------------------------------------------------------------------- 4. tutor consistency
# The customer's primary tutor; the tutor view is looked up with it.
_TUTOR_CONSISTENCY: tuple[CustomerFeature, ...] = (
    PrimaryKey("primary_tutor_id", _completed_sessions, "tutor_id", key_of=TUTOR_VIEW),
    PrimaryShare("tutor_consistency_score", "primary_tutor_id", completed),
    DistinctInWindow("tutor_switch_count_30d", _completed_sessions, "tutor_id", 30),
)
t_rating_sum = GroupMetric("t_rating_sum", _rated_sessions, "tutor_id", value="student_rating")
t_rating_n = GroupMetric("t_rating_n", _rated_sessions, "tutor_id")
t_response_minutes = GroupMetric("t_response_minutes", events("tutor_response"), "tutor_id",
                                 value="response_time_minutes")
t_responses = GroupMetric("t_responses", events("tutor_response"), "tutor_id")
t_scheduled = GroupMetric("t_scheduled", _sessions, "tutor_id")
t_tutor_cancelled = GroupMetric("t_tutor_cancelled", events("session_completed", where=(
    eq("status", "cancelled"), eq("cancelled_by", "tutor"))), "tutor_id")
TUTOR_METRICS: tuple[GroupMetric, ...] = (
    t_rating_sum, t_rating_n, t_response_minutes, t_responses, t_scheduled, t_tutor_cancelled)
TUTOR_FEATURES: tuple[GroupFeature, ...] = (
    GroupFeature("tutor_avg_rating_30d", t_rating_sum, TUTOR_WINDOW_DAYS, t_rating_n,
                 doc="the tutor's mean session rating (spec: primary_tutor_rating)"),
    GroupFeature("tutor_avg_response_minutes_30d", t_response_minutes, TUTOR_WINDOW_DAYS, t_responses,
                 doc="the tutor's mean response time in minutes (spec: avg_tutor_response_time)"),
    GroupFeature("tutor_cancellation_rate_30d", t_tutor_cancelled, TUTOR_WINDOW_DAYS, t_scheduled,
                 bounded=True, doc="sessions the tutor cancelled / sessions scheduled with the tutor "
                                   "(spec: tutor_cancellation_rate)"),
)

# --------------------------------------------------------------------------- 5. supply/demand per subject
# The customer's subject; the subject view is looked up with it.
_SUBJECT_KEY: tuple[CustomerFeature, ...] = (
    LatestValue("primary_subject", _signup, "primary_subject", categories=SUBJECTS, category="subject",
                key_of=SUBJECT_VIEW),
)
s_tutors = GroupMetric("s_tutors", events("tutor_availability"), "subject", distinct="tutor_id")
s_requests = GroupMetric("s_requests", events("booking_request"), "subject")
s_match_minutes = GroupMetric("s_match_minutes", events("booking_matched"), "subject", value="time_to_match_minutes")
s_matches = GroupMetric("s_matches", events("booking_matched"), "subject")
s_booked_minutes = GroupMetric("s_booked_minutes", _timed_sessions, "subject", value="duration_minutes")
s_available_hours = GroupMetric("s_available_hours", events("tutor_availability"), "subject", value="available_hours")
SUBJECT_METRICS: tuple[GroupMetric, ...] = (
    s_tutors, s_requests, s_match_minutes, s_matches, s_booked_minutes, s_available_hours)
# Per subject: a column f"{name}_{subject}" in the marketplace view, a row per subject in the
# subject view. "Pending requests" is read as demand: the booking requests made in the window
# (the event log has no queue state to count).
SUBJECT_FEATURES: tuple[GroupFeature, ...] = (
    GroupFeature("supply_demand_ratio", s_tutors, SUBJECT_WINDOW_DAYS, s_requests,
                 doc="distinct tutors offering the subject / booking requests for it"),
    GroupFeature("avg_match_time", s_match_minutes, SUBJECT_WINDOW_DAYS, s_matches,
                 doc="mean minutes from booking request to match"),
    GroupFeature("utilization_rate", s_booked_minutes, SUBJECT_WINDOW_DAYS, s_available_hours, scale=1 / 60,
                 doc="hours of completed sessions / hours tutors made available (can exceed 1 when tutors "
                     "teach beyond what they published)"),
    GroupFeature("tutor_count", s_tutors, SUBJECT_WINDOW_DAYS, nullable=False,
                 doc="distinct tutors who published availability for the subject"),
)

# --------------------------------------------------------------------------- 6. cohort / segment
_SEGMENT: tuple[CustomerFeature, ...] = (
    LatestValue("acquisition_channel", _signup, "acquisition_channel", categories=CHANNELS),
    LatestValue("student_grade_level", _signup, "grade_level", dtype="int64"),
    LatestValue("primary_subject_category", _signup, "subject_category", categories=CATEGORIES),
    LatestValue("geographic_region", _signup, "region", categories=REGIONS),
)

# --------------------------------------------------------------------------- 7. trend
_TREND_NOW: tuple[OnDemand, ...] = (
    OnDemand("session_velocity_change", TREND_VIEW, "per_day_change", ("session_count_7d", "session_count_30d"),
             "trend", divisors=(7, 30)),
    OnDemand("rating_trend", TREND_VIEW, "difference", ("avg_session_rating_7d", "avg_session_rating_30d"), "trend"),
    OnDemand("engagement_trend", TREND_VIEW, "difference", ("login_count_7d", "login_count_14d"), "trend"),
    OnDemand("spend_acceleration", TREND_VIEW, "per_day_change", ("payment_amount_7d", "payment_amount_30d"),
             "trend", divisors=(7, 30)),
)

# --------------------------------------------------------------------------- the column order (fixed)
CUSTOMER_FEATURES: tuple[CustomerFeature, ...] = (
    _WINDOW + _LIFETIME + _SEGMENT + _SUBJECT_KEY + _RECENCY_INPUTS + _TUTOR_CONSISTENCY
    + _LIFETIME_PER_ACTIVE_DAY)
ON_DEMAND: tuple[OnDemand, ...] = _RECENCY_NOW + _LIFETIME_NOW + _TREND_NOW
