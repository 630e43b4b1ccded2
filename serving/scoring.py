"""The scoring path: customer ids + request time -> Feast online features -> endpoint -> predictions.

``Scorer.score(customer_ids, request_time)`` reads ``churn_model_v1`` from the online store
(``features.retrieval.online_features``: the customer view, the primary-tutor second lookup,
the marketplace view and the on-demand views at the request time), sends the model
columns to the endpoint (one call for the whole batch, retried on
``EndpointUnavailable`` with backoff) and logs every served vector for drift.
Failures propagate (``OnlineLookupFailed`` when the store cannot be read, ``EndpointUnavailable``
after the retries, ``EndpointRejected`` for a 4xx) so the caller decides what to keep
(``serving.service``).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from features.retrieval import model_columns, online_feature_rows

from .alerts import iso
from .endpoint import Endpoint, RetryPolicy, invoke_with_retry
from .served_log import ServedLog


class OnlineLookupFailed(RuntimeError):
    """The online store could not be read (down, throttled, unreachable): the request is kept pending."""


@dataclass
class Scored:
    customer_id: str
    request_time: datetime
    features: dict[str, Any]          # the model's input row, as sent
    prediction: dict[str, Any]        # churn_risk_30d, ib_call_risk_14d, customer_health_score, model_version


def _py(v: Any) -> Any:
    """pandas/numpy scalars -> JSON-ready Python values; every kind of missing -> None."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def model_rows(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[dict[str, Any]]:
    """Online feature records -> the model's input rows: ``columns`` only, JSON-ready values."""
    missing = [c for c in columns if records and c not in records[0]]
    if missing:
        raise RuntimeError(f"online features lack model columns {missing}")
    return [{c: _py(r[c]) for c in columns} for r in records]


def frame_to_rows(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    return model_rows(frame.to_dict("records"), columns)


class Scorer:
    def __init__(self, store, endpoint: Endpoint, served_log: ServedLog | None = None,
                 retry: RetryPolicy = RetryPolicy(), columns: Sequence[str] | None = None,
                 sleep: Callable[[float], None] = time.sleep):

        self.store, self.endpoint, self.served_log, self.retry = store, endpoint, served_log, retry
        self.columns = list(columns or model_columns())
        self._sleep = sleep

    def features(self, customer_ids: Sequence[str], request_time: datetime) -> list[dict[str, Any]]:
        # the rows API: the same values as online_features without building a DataFrame (~2 ms of
        # pandas per lookup, docs/serving.md)

        try:
            records = online_feature_rows(self.store, list(customer_ids), pd.Timestamp(request_time))
        except Exception as exc:  # noqa: BLE001 - any store failure: the caller keeps the request pending
            raise OnlineLookupFailed(f"online lookup of {len(customer_ids)} customer(s) failed: "
                                     f"{type(exc).__name__}: {exc}") from exc
        return model_rows(records, self.columns)

    def invoke(self, rows: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return invoke_with_retry(lambda: self.endpoint.invoke(rows), self.retry, self._sleep)

    def score(self, customer_ids: Sequence[str], request_time: datetime) -> list[Scored]:
        if request_time.tzinfo is None:
            raise ValueError("request_time must be timezone-aware UTC")
        ids = list(dict.fromkeys(customer_ids))
        if not ids:
            return []
        rows = self.features(ids, request_time)
        preds = self.invoke(rows)
        if self.served_log is not None:
            t = iso(request_time)
            self.served_log.write([{"customer_id": c, "request_time": t, "model_version": p.get("model_version"), **r}
                                   for c, r, p in zip(ids, rows, preds)])
        return [Scored(c, request_time, r, p) for c, r, p in zip(ids, rows, preds)]
