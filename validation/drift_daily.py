"""Drift of a daily batch value (marketplace-wide or per-subject columns), judged over days.

Such a column holds one value per UTC day (per subject) that every customer served that day
shares; comparing it row-weighted would compare ~70 training days against a week of serving
and flag "a different week". Here the column is reduced to its distinct (day, value) pairs and
the served days are checked against the range the reference days spanned, widened by
``MARGIN`` of that range: the score is the share of served day-values outside it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

MARGIN = 0.1
#: share of served day-values outside the reference range: >= MODERATE moderate, >= DRIFT drift
MODERATE, DRIFT = 0.25, 0.5


def day_values(values: pd.Series, times: pd.Series) -> np.ndarray:
    """The column's distinct values per UTC day (one per day for a marketplace-wide column, one per
    subject for a subject view column), nulls as NaN."""
    day = pd.to_datetime(times, utc=True, format="ISO8601").dt.floor("D")
    pairs = pd.DataFrame({"day": day.to_numpy(), "v": pd.to_numeric(values, errors="coerce").astype(float).to_numpy()})
    return pairs.drop_duplicates().v.to_numpy()


def outside_share(reference_days: np.ndarray, serving_days: np.ndarray) -> tuple[float, tuple[float, float]]:
    """(share of served day-values outside the reference days' widened range, that range).

    A null day counts as outside only if the reference never had one."""
    ref = reference_days[~np.isnan(reference_days)]
    if not len(serving_days):
        return 0.0, (np.nan, np.nan)
    if not len(ref):
        return float((~np.isnan(serving_days)).mean()), (np.nan, np.nan)
    lo, hi = float(ref.min()), float(ref.max())
    pad = MARGIN * (hi - lo) if hi > lo else MARGIN * max(abs(hi), 1e-9)
    lo, hi = lo - pad, hi + pad
    nan = np.isnan(serving_days)
    out = (serving_days[~nan] < lo) | (serving_days[~nan] > hi)
    null_outside = nan.sum() if len(ref) == len(reference_days) else 0
    return float((out.sum() + null_outside) / len(serving_days)), (lo, hi)


def status_of_share(share: float) -> str:
    return "stable" if share < MODERATE else "moderate" if share < DRIFT else "drift"
