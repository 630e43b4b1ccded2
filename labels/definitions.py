"""Label definitions: functions of a customer's behaviour strictly after t.

For an example at time t, labels use events with timestamp in (t, t + horizon]
(DESIGN §4.10). They are defined here once, over per-customer aggregates of
that future window, so the dataset builder (over the real event log) and the
simulator's oracle (over simulated futures) compute the very same quantity.

health_score (0-100), over the next HEALTH_DAYS days:
    engagement   = min(completed_sessions / 8, 1)
    satisfaction = (mean rating - 1) / 4, or 0.5 when no session was rated
    friction     = min((inbound_calls + 2 * failed_payments + no_shows) / 6, 1)
    retained     = 0 if the subscription was cancelled in the window, else 1
    health_score = 100 * (0.35 * engagement + 0.25 * satisfaction
                          + 0.20 * (1 - friction) + 0.20 * retained)
A customer who cancels stops producing events, so engagement falls with it.
"""
from __future__ import annotations

import numpy as np

CHURN_DAYS = 30
CALLS_DAYS = 14
CALLS_THRESHOLD = 2
HEALTH_DAYS = 30
LABEL_HORIZON_DAYS = max(CHURN_DAYS, CALLS_DAYS, HEALTH_DAYS)
LABELS = ("churn_30d", "ib_calls_14d", "health_score")


def churn_label(cancelled_within_30d) -> np.ndarray:
    return np.asarray(cancelled_within_30d, dtype=bool).astype(np.int8)


def ib_calls_label(inbound_calls_within_14d) -> np.ndarray:
    return (np.asarray(inbound_calls_within_14d) >= CALLS_THRESHOLD).astype(np.int8)


def health_score(completed_sessions, rating_sum, rating_n, inbound_calls, failed_payments, no_shows,
                 cancelled) -> np.ndarray:
    """All arguments are counts/sums over (t, t + HEALTH_DAYS]; vectorised over customers."""
    completed = np.asarray(completed_sessions, dtype=float)
    rating_n = np.asarray(rating_n, dtype=float)
    rating_sum = np.asarray(rating_sum, dtype=float)
    engagement = np.minimum(completed / 8.0, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        satisfaction = np.where(rating_n > 0, (rating_sum / np.maximum(rating_n, 1) - 1.0) / 4.0, 0.5)
    friction = np.minimum(
        (np.asarray(inbound_calls, float) + 2 * np.asarray(failed_payments, float) + np.asarray(no_shows, float)) / 6.0,
        1.0,
    )
    retained = 1.0 - np.asarray(cancelled, dtype=float)
    return 100.0 * (0.35 * engagement + 0.25 * satisfaction + 0.20 * (1.0 - friction) + 0.20 * retained)
