"""Render docs/features.md from the catalog (``mhp features-doc``); a test keeps the file in sync."""
from __future__ import annotations

from events.contract import SUBJECTS

from . import catalog as C

INTRO = f"""# Features

Generated from `features/catalog.py` by `mhp features-doc`; do not edit by hand
(`tests/test_features_doc.py` fails when this file and the catalog disagree).

## Time semantics

* **Event time only.** A customer feature at time `t` is a function of that
  customer's events with `timestamp <= t` (an event at exactly `t` counts).
  No wall clock anywhere: offline `t` is the entity row's timestamp, online the
  request time.
* **Day-aligned windows.** The `Nd` window at `t` covers
  `[midnight_utc(t) - (N-1) days, t]`: the last N UTC calendar days, today
  included. A login at 2025-01-01T10:00Z is in `login_count_7d` through
  2025-01-07T23:59:59Z and out at 2025-01-08T00:00Z.
* **Decay.** Window features change at UTC midnights even without events. The
  backfill writes a snapshot at every midnight within {C.MAX_WINDOW_DAYS} days
  after one of the customer's events; the stream ingester applies a day tick
  at those of them where a day leaves a window (the rows in between are equal).
  So Feast's "latest row at or before t" is exact.
* **Missing is not zero.** Ratios and averages are null when their
  denominator is 0 (no sessions: no rating; no payment attempt: no success
  rate). Counts and sums are 0. Segment values and timestamps are null until
  the first event that carries them.
* **Batch entities.** Tutor features (entity `tutor`), subject features
  (entity `subject`) and per-subject marketplace features (entity
  `marketplace`, constant key `{C.MARKETPLACE_KEY}`) are snapshots at every UTC midnight `d` over the
  complete days `[d - N days, d)`: {C.TUTOR_WINDOW_DAYS} days for tutors,
  {C.SUBJECT_WINDOW_DAYS} days for subjects.
* **Primary tutor and subject.** A customer's tutor and subject features are
  looked up with second keys, `primary_tutor_id` and `primary_subject` as of
  `t`, identically offline and online (`features/retrieval.py`).

## Decisions where the spec is vague

* `session_count_Nd` counts sessions **held** (`status = completed`); the
  rates' denominator ("scheduled", "total") is every `session_completed`
  record whatever its status.
* `days_active_Nd`: days with a login, a message or a booking request (things
  the customer did; billing runs unattended, a session needs a booking).
* `negative_sentiment_calls_Nd`: `sentiment_score < -0.3`, strictly.
* `payment_success_rate_Nd`: succeeded / (succeeded + failed) attempts.
* `first_session_was_success`: the first completed session **with a rating**
  had a rating > 4.0.
* `primary_tutor_id`: the tutor with the most completed sessions over the
  whole history (ties: the one that reached the top count most recently);
  `tutor_consistency_score` = that count / all completed sessions;
  `tutor_switch_count_30d` = distinct tutors of completed sessions in the
  30d window.
* Spec tutor names: `primary_tutor_rating` = `tutor_avg_rating_30d`,
  `avg_tutor_response_time` = `tutor_avg_response_minutes_30d`,
  `tutor_cancellation_rate` = `tutor_cancellation_rate_30d`, all of the
  customer's primary tutor.
* Supply/demand: "pending requests" is read as demand, the booking requests
  made for the subject in the window (the log has no queue state);
  `supply_demand_ratio` = distinct tutors who published availability /
  booking requests; null when there were no requests. The spec's 20 subjects
  are `{', '.join(SUBJECTS)}`.
* Recency and tenure are computed at request time by on-demand views from the
  stored last-seen timestamps (integer microseconds since the epoch: Feast's
  online timestamp type keeps whole seconds only). Days are fractional;
  `customer_tenure_days` is the whole number of days since signup.
* Trend features are computed by an on-demand view from the stored windows.
* Categorical segment values are stored as strings; the model's preprocessing
  encodes them (tier ordinal budget < standard < premium; the rest one-hot).
"""


def _table(rows: list[tuple], header: tuple) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def render() -> str:
    parts = [INTRO]
    parts.append("## Metrics (customer, daily tiles)\n\nThe additive quantities the window and lifetime features "
                 "are built from.\n\n" + _table([(f"`{m.name}`", m.describe()) for m in C.METRICS], ("metric", "meaning")))
    by_cat: dict[str, list] = {}
    for f in C.CUSTOMER_FEATURES:
        by_cat.setdefault(f.category, []).append(f)
    in_service = {m["name"] for m in C.model_features()}
    parts.append(f"## Customer view `{C.CUSTOMER_VIEW}` (entity `customer`)\n\nWritten online only by the "
                 "ordered stream path (push source); offline by the backfill.")
    for cat, feats in by_cat.items():
        rows = [(f"`{f.name}`", f.dtype, "yes" if f.nullable else "no", "yes" if f.name in in_service else "no",
                 f.describe()) for f in feats]
        parts.append(f"### {cat}\n\n" + _table(rows, ("feature", "dtype", "nullable", "model input", "meaning")))
    rows = [(f"`{f.name}`", f.dtype, f"{f.doc}; over the {f.days} complete UTC days before the snapshot"
             + ("" if f.den is None else "; null when the denominator is 0")) for f in C.TUTOR_FEATURES]
    parts.append(f"## Tutor view `{C.TUTOR_VIEW}` (entity `tutor`, daily)\n\n" + _table(rows, ("feature", "dtype", "meaning")))
    metric_rows = [(f"`{m.name}`", m.describe()) for m in C.TUTOR_METRICS + C.SUBJECT_METRICS]
    parts.append("### Batch metrics\n\n" + _table(metric_rows, ("metric", "meaning (per tutor / per subject)")))
    rows = [(f"`{f.name}_<subject>`", f.dtype, f"{f.doc}; over the {f.days} complete UTC days before the snapshot"
             + ("" if f.den is None else "; null when the denominator is 0")) for f in C.SUBJECT_FEATURES]
    subject_rows = [(f"`{col}`", f.dtype, f"{f.doc}; over the {f.days} complete UTC days before the snapshot"
                     + ("" if f.den is None else "; null when the denominator is 0"))
                    for col, f in C.subject_view_columns()]
    parts.append(f"## Subject view `{C.SUBJECT_VIEW}` (entity `subject`, daily)\n\n"
                 "One row per subject and UTC midnight (every declared subject): the values of the marketplace "
                 "columns below, long. A customer's own subject is looked up by `primary_subject` as of `t`; "
                 "null when the customer has none. These are the model's supply/demand inputs.\n\n"
                 + _table(subject_rows, ("feature", "dtype", "meaning")))
    parts.append(f"## Marketplace view `{C.MARKETPLACE_VIEW}` (entity `marketplace`, daily)\n\n"
                 f"One column per feature and subject ({len(C.subject_columns())} columns). In the feature "
                 f"service and the inference contract with kind `{C.CONTEXT_KIND}`: a request carries them "
                 "(a number or null), the model's preprocessing validates and drops them. They are the same for "
                 "every customer at a given time, so under a time split they mostly identify the date "
                 "(`docs/model.md`).\n\n"
                 + _table(rows, ("feature", "dtype", "meaning")))
    rows = [(f"`{f.name}`", f"`{f.view}`", f.formula) for f in C.ON_DEMAND]
    parts.append(f"## On-demand views (request time field `{C.REQUEST_TIME_FIELD}`)\n\n"
                 + _table(rows, ("feature", "view", "formula")))
    parts.append(f"## Feature service `{C.FEATURE_SERVICE}`\n\nThe model's whole input vector: "
                 f"{len(C.model_features())} features (customer view minus the last-seen timestamps, the lifetime "
                 "counts that only feed the per-tenure-day rates, and the primary tutor and subject keys, the tutor view via the primary tutor, the subject view via the "
                 f"primary subject, the marketplace view (kind `{C.CONTEXT_KIND}`: served, not learned from), "
                 "both on-demand views).\n")
    return "\n\n".join(parts).rstrip() + "\n"
