"""The time split of a training set: train, a label-horizon gap, then validation and test.

``SplitPolicy``: train = rows with ``t <= train_end``; the holdout = rows with
``t >= holdout_start = train_end + gap_days`` (gap = the label horizon, 30 days), so every
train label window ``(t, t + 30d]`` ends before the first holdout row's t: nothing a train
label saw is in the holdout period, and a model trained on the train rows could have been
trained at ``holdout_start``. Rows in the gap are dropped (the caller counts them). The
holdout is split into validation and test either by customer (``val_by="customer"``,
default: a seeded hash puts each customer's holdout rows wholly in one of them, so no
validation label window covers a test row of the same customer) or by time with a second
gap (``val_by="time"``; needs a longer history than the default 120-day simulation provides).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

import numpy as np
import pandas as pd

from core.times import DAY_US, from_us
from labels import LABEL_HORIZON_DAYS
from training.errors import DatasetBuildError


@dataclass(frozen=True)
class SplitPolicy:
    gap_days: int = LABEL_HORIZON_DAYS     # between the splits: the label horizon
    holdout_fraction: float = 0.35         # of the sampled time span (gaps excluded) that is held out
    val_by: str = "customer"               # "customer" or "time"
    val_share: float = 0.4                 # share of the holdout customers (or time) for validation
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gap_days < LABEL_HORIZON_DAYS:
            raise ValueError(f"gap_days: expected at least the label horizon ({LABEL_HORIZON_DAYS}), "
                             f"got {self.gap_days!r}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction: expected a number in (0, 1), got {self.holdout_fraction!r}")
        if self.val_by not in ("customer", "time"):
            raise ValueError(f"val_by: expected 'customer' or 'time', got {self.val_by!r}")
        if not 0.0 < self.val_share < 1.0:
            raise ValueError(f"val_share: expected a number in (0, 1), got {self.val_share!r}")


@dataclass
class SplitBoundaries:
    first_t: datetime
    last_t: datetime
    train_end: datetime               # train: t <= train_end
    holdout_start: datetime           # validation/test: t >= holdout_start
    val_by: str
    val_end: datetime | None = None   # val_by="time": validation t <= val_end
    test_start: datetime | None = None  # val_by="time": test t >= test_start

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in dataclasses.asdict(self).items()}


def _hash_unit(values: Iterable[str], seed: int) -> np.ndarray:
    """A deterministic uniform number in [0, 1) per value (sha256 of 'seed:value')."""
    return np.array([int.from_bytes(hashlib.sha256(f"{seed}:{v}".encode()).digest()[:8], "big") / 2.0 ** 64
                     for v in values])


def split_boundaries(first_us: int, last_us: int, policy: SplitPolicy) -> SplitBoundaries:
    """Where the splits fall in [first_us, last_us] (whole days; see the module doc)."""
    span_days = (last_us - first_us) // DAY_US
    gaps = policy.gap_days * (2 if policy.val_by == "time" else 1)
    usable = span_days - gaps
    if usable < 2:
        raise DatasetBuildError(
            f"the sampled time span is {span_days} days, too short for a time split with "
            f"{gaps} gap day(s) (val_by={policy.val_by!r}); simulate more days or use a shorter warm-up")
    holdout = max(1, int(round(usable * policy.holdout_fraction)))
    train_days = usable - holdout
    train_end = first_us + train_days * DAY_US
    holdout_start = train_end + policy.gap_days * DAY_US
    b = SplitBoundaries(from_us(first_us), from_us(last_us), from_us(train_end), from_us(holdout_start),
                        policy.val_by)
    if policy.val_by == "time":
        val_days = max(0, int(round((holdout - 1) * policy.val_share)))
        val_end = holdout_start + val_days * DAY_US
        b.val_end, b.test_start = from_us(val_end), from_us(val_end + policy.gap_days * DAY_US)
    return b


def assign_splits(rows: pd.DataFrame, b: SplitBoundaries, policy: SplitPolicy) -> pd.Series:
    """'train' / 'validation' / 'test', or None for rows in a gap (they are dropped)."""
    t = rows["event_timestamp"]
    split = pd.Series(np.full(len(rows), None, dtype=object), index=rows.index)
    split[t <= b.train_end] = "train"
    hold = t >= b.holdout_start
    if policy.val_by == "customer":
        customers = rows.loc[hold, "customer_id"].astype(str)
        uniq = pd.unique(customers)
        val_customers = set(uniq[_hash_unit(uniq, policy.seed) < policy.val_share])
        is_val = customers.isin(val_customers)
        split[hold] = np.where(is_val, "validation", "test")
    else:
        split[hold & (t <= b.val_end)] = "validation"
        split[t >= b.test_start] = "test"
    return split
