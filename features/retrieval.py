"""Reading the model's input vector, offline (point in time) and online, the same way.

The customer's primary-tutor features are a second lookup keyed by the
primary tutor as of t (DESIGN §4.9): first ``primary_tutor_id`` from the
customer view, then the feature service with that tutor, the constant
marketplace key and the request time. Every input row comes back, in input
order, with nulls where no value existed yet.
"""
from __future__ import annotations

import pandas as pd
from feast import FeatureStore

from . import catalog as C

_ROW = "__row"
_PRIMARY = f"{C.CUSTOMER_VIEW}:primary_tutor_id"
NO_TUTOR = ""  # join key used when a customer has no primary tutor yet: matches no tutor row


def _check_entity_df(entity_df: pd.DataFrame) -> pd.DataFrame:
    missing = {"customer_id", "event_timestamp"} - set(entity_df.columns)
    if missing:
        raise ValueError(f"entity dataframe: missing column(s) {sorted(missing)}; expected customer_id and "
                         "event_timestamp (timezone-aware UTC)")
    ts = entity_df["event_timestamp"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise ValueError(f"entity dataframe: event_timestamp must be timezone-aware UTC, got dtype {ts.dtype}")
    if entity_df["customer_id"].isna().any():
        raise ValueError("entity dataframe: customer_id has nulls")
    return entity_df


def historical_features(store: FeatureStore, entity_df: pd.DataFrame) -> pd.DataFrame:
    """``churn_model_v1`` as of each row's ``event_timestamp``; extra input columns are kept."""
    entity_df = _check_entity_df(entity_df)
    base = entity_df.reset_index(drop=True).copy()
    base[_ROW] = range(len(base))
    keys = base[[_ROW, "customer_id", "event_timestamp"]]
    primary = store.get_historical_features(keys, features=[_PRIMARY]).to_df().sort_values(_ROW)
    base["tutor_id"] = primary["primary_tutor_id"].fillna(NO_TUTOR).astype(str).to_numpy()
    base["marketplace_id"] = C.MARKETPLACE_KEY
    base[C.REQUEST_TIME_FIELD] = _epoch_us(base["event_timestamp"])
    service = store.get_feature_service(C.FEATURE_SERVICE)
    out = store.get_historical_features(base, features=service).to_df()
    if len(out) != len(base):  # the guarantee we chose the duckdb store for; never drop a row silently
        raise RuntimeError(f"point-in-time join returned {len(out)} rows for {len(base)} entity rows")
    out = out.sort_values(_ROW).drop(columns=[_ROW]).reset_index(drop=True)
    out["tutor_id"] = out["tutor_id"].replace(NO_TUTOR, None)
    return out


def online_features(store: FeatureStore, customer_ids: list[str], request_time: pd.Timestamp) -> pd.DataFrame:
    """``churn_model_v1`` from the online store for ``customer_ids`` at ``request_time``."""
    if request_time.tzinfo is None:
        raise ValueError("request_time must be timezone-aware UTC")
    rows = [{"customer_id": c} for c in customer_ids]
    primary = store.get_online_features(features=[_PRIMARY], entity_rows=rows).to_dict()["primary_tutor_id"]
    rows = [{"customer_id": c, "tutor_id": t if t is not None else NO_TUTOR, "marketplace_id": C.MARKETPLACE_KEY,
             C.REQUEST_TIME_FIELD: int(_epoch_us(pd.Series([request_time])).iloc[0])}
            for c, t in zip(customer_ids, primary)]
    service = store.get_feature_service(C.FEATURE_SERVICE)
    out = store.get_online_features(features=service, entity_rows=rows).to_df()
    out["tutor_id"] = out["tutor_id"].replace(NO_TUTOR, None)
    return out


def _epoch_us(ts: pd.Series) -> pd.Series:
    return (ts.dt.tz_convert("UTC") - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)


def model_columns() -> list[str]:
    return [f["name"] for f in C.model_features()]
