"""Feast definitions generated from the catalog: entities, sources, views, the feature service.

Views are grouped by entity and update path (DESIGN §4.12): one customer view
(written online only by the ordered per-customer stream path, through its push
source), one tutor view and one marketplace view (batch, materialized), and
two on-demand views (request-time recency; trends over the customer view).
"""
from __future__ import annotations

from datetime import timedelta

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float64, Int64, String, UnixTimestamp

from . import catalog as C

_DTYPES = {"int64": Int64, "float64": Float64, "string": String, "bool": Bool, "timestamp": UnixTimestamp}
NO_EXPIRY = timedelta(0)  # Feast: 0 = the latest row at or before t, however old


def source_path(features_uri: str, view: str) -> str:
    return f"{features_uri.rstrip('/')}/{view}.parquet"


def build(features_uri: str) -> dict[str, object]:
    """Every Feast object, keyed by name; ``features_uri`` holds the backfill's Parquet tables."""
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    tutor = Entity(name="tutor", join_keys=["tutor_id"], value_type=ValueType.STRING)
    # The duckdb store cannot materialize entityless views: a constant-key marketplace entity instead.
    marketplace = Entity(name="marketplace", join_keys=["marketplace_id"], value_type=ValueType.STRING)

    def file_source(view: str) -> FileSource:
        return FileSource(name=f"{view}_source", path=source_path(features_uri, view),
                          timestamp_field="event_timestamp")

    customer_source = file_source(C.CUSTOMER_VIEW)
    customer_push = PushSource(name=f"{C.CUSTOMER_VIEW}_push", batch_source=customer_source)
    customer_view = FeatureView(
        name=C.CUSTOMER_VIEW, entities=[customer], ttl=NO_EXPIRY, source=customer_push, online=True,
        schema=[Field(name=f.name, dtype=_DTYPES[f.dtype]) for f in C.CUSTOMER_FEATURES],
        description="Per-customer window, lifetime, segment, recency-input and tutor-consistency features.",
    )
    tutor_view = FeatureView(
        name=C.TUTOR_VIEW, entities=[tutor], ttl=NO_EXPIRY, source=file_source(C.TUTOR_VIEW), online=True,
        schema=[Field(name=f.name, dtype=_DTYPES[f.dtype]) for f in C.TUTOR_FEATURES],
        description="Daily tutor quality snapshots; a customer's primary tutor is looked up here.",
    )
    marketplace_view = FeatureView(
        name=C.MARKETPLACE_VIEW, entities=[marketplace], ttl=NO_EXPIRY, source=file_source(C.MARKETPLACE_VIEW),
        online=True, schema=[Field(name=col, dtype=_DTYPES[f.dtype]) for col, f, _ in C.subject_columns()],
        description="Daily per-subject supply/demand snapshots, keyed by the constant marketplace id.",
    )
    request = RequestSource(name="scoring_request",
                            schema=[Field(name=C.REQUEST_TIME_FIELD, dtype=Int64)])

    recency_fields = [f for f in C.ON_DEMAND if f.view == C.RECENCY_VIEW]
    trend_fields = [f for f in C.ON_DEMAND if f.view == C.TREND_VIEW]

    @on_demand_feature_view(
        sources=[customer_view[[n for f in recency_fields for n in f.inputs]], request],
        schema=[Field(name=f.name, dtype=Float64) for f in recency_fields], mode="pandas",
        description="Time since last activity, computed from the request time (never the wall clock).",
    )
    def customer_recency(inputs: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd  # on-demand functions are serialized: imports inside the body

        inputs = inputs.loc[:, ~inputs.columns.duplicated()]  # offline retrieval can repeat a column
        now = pd.to_datetime(pd.to_numeric(inputs["request_time_us"]), unit="us", utc=True)

        def days_since(col):
            then = pd.to_datetime(pd.to_numeric(inputs[col], errors="coerce"), unit="us", utc=True)
            return ((now - then).dt.total_seconds() / 86400.0).astype("float64")

        out = pd.DataFrame(index=inputs.index)
        out["days_since_last_session"] = days_since("last_session_ts")
        out["days_since_last_login"] = days_since("last_login_ts")
        out["days_since_last_payment"] = days_since("last_payment_ts")
        out["days_since_last_ib_call"] = days_since("last_ib_call_ts")
        out["days_since_signup"] = days_since("signup_ts")
        out["customer_tenure_days"] = out["days_since_signup"].apply(lambda d: float(int(d // 1)) if d == d else d)
        return out

    @on_demand_feature_view(
        sources=[customer_view[sorted({n for f in trend_fields for n in f.inputs})]],
        schema=[Field(name=f.name, dtype=Float64) for f in trend_fields], mode="pandas",
        description="Short- versus long-window changes of the customer's behaviour.",
    )
    def customer_trends(inputs: pd.DataFrame) -> pd.DataFrame:
        import pandas as pd

        inputs = inputs.loc[:, ~inputs.columns.duplicated()]

        def col(name):
            return pd.to_numeric(inputs[name], errors="coerce").astype("float64")

        out = pd.DataFrame(index=inputs.index)
        out["session_velocity_change"] = col("session_count_7d") / 7 - col("session_count_30d") / 30
        out["rating_trend"] = col("avg_session_rating_7d") - col("avg_session_rating_30d")
        out["engagement_trend"] = col("login_count_7d") - col("login_count_14d")
        out["spend_acceleration"] = col("payment_amount_7d") / 7 - col("payment_amount_30d") / 30
        return out

    model_customer = [m["name"] for m in C.model_features() if m["view"] == C.CUSTOMER_VIEW]
    service = FeatureService(
        name=C.FEATURE_SERVICE,
        features=[customer_view[model_customer], tutor_view, marketplace_view, customer_recency, customer_trends],
        description="The multi-task model's whole input vector (the tutor view is keyed by the primary tutor).",
    )
    objs = [customer, tutor, marketplace, customer_source, customer_push, tutor_view.batch_source,
            marketplace_view.batch_source, customer_view, tutor_view, marketplace_view, request,
            customer_recency, customer_trends, service]
    return {o.name: o for o in objs}
