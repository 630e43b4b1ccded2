"""Feast definitions generated from the declarations: entities, sources, views, the feature service.

Views are grouped by entity and update path (docs/ingestion.md): one customer view
(written online only by the ordered per-customer stream path, through its push
source), one tutor view, one subject view and one marketplace view (batch, materialized), and
two on-demand views (request-time recency; trends over the customer view).
"""
from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, RequestSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Bool, Float64, Int64, String, UnixTimestamp

from . import catalog as C

_DTYPES = {"int64": Int64, "float64": Float64, "string": String, "bool": Bool, "timestamp": UnixTimestamp}
#: The customer row is valid until the customer's next change: a TTL far beyond any history keeps
#: point-in-time joins "latest row at or before t" and makes `feast materialize-incremental`'s
#: first run (which starts at now - ttl) load the whole history. (0 would mean "no expiry" to the
#: joins but "one year back" to materialize-incremental.)
CUSTOMER_TTL = timedelta(days=3650)
#: Daily snapshots: a row is the day's state, valid for one day; the backfill writes one row per
#: entity for every day, so the previous day's row is always within one day of any time.
DAILY_TTL = timedelta(days=1)


def source_path(features_uri: str, view: str) -> str:
    return f"{features_uri.rstrip('/')}/{view}.parquet"


def build(features_uri: str) -> dict[str, object]:
    """Every Feast object, keyed by name; ``features_uri`` holds the backfill's Parquet tables."""
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    tutor = Entity(name="tutor", join_keys=["tutor_id"], value_type=ValueType.STRING)
    subject = Entity(name="subject", join_keys=["subject"], value_type=ValueType.STRING)
    # The duckdb store cannot materialize entityless views: a constant-key marketplace entity instead.
    marketplace = Entity(name="marketplace", join_keys=["marketplace_id"], value_type=ValueType.STRING)

    def file_source(view: str) -> FileSource:
        return FileSource(name=f"{view}_source", path=source_path(features_uri, view),
                          timestamp_field="event_timestamp")

    customer_source = file_source(C.CUSTOMER_VIEW)
    customer_push = PushSource(name=f"{C.CUSTOMER_VIEW}_push", batch_source=customer_source)
    customer_view = FeatureView(
        name=C.CUSTOMER_VIEW, entities=[customer], ttl=CUSTOMER_TTL, source=customer_push, online=True,
        schema=[Field(name=f.name, dtype=_DTYPES[f.dtype]) for f in C.CUSTOMER_FEATURES],
        description="Per-customer window, lifetime, segment, recency-input and tutor-consistency features.",
    )
    tutor_view = FeatureView(
        name=C.TUTOR_VIEW, entities=[tutor], ttl=DAILY_TTL, source=file_source(C.TUTOR_VIEW), online=True,
        schema=[Field(name=f.name, dtype=_DTYPES[f.dtype]) for f in C.TUTOR_FEATURES],
        description="Daily tutor quality snapshots; a customer's primary tutor is looked up here.",
    )
    subject_view = FeatureView(
        name=C.SUBJECT_VIEW, entities=[subject], ttl=DAILY_TTL, source=file_source(C.SUBJECT_VIEW), online=True,
        schema=[Field(name=col, dtype=_DTYPES[f.dtype]) for col, f in C.subject_view_columns()],
        description="Daily supply/demand snapshots per subject; a customer's primary subject is looked up here.",
    )
    marketplace_view = FeatureView(
        name=C.MARKETPLACE_VIEW, entities=[marketplace], ttl=DAILY_TTL, source=file_source(C.MARKETPLACE_VIEW),
        online=True, schema=[Field(name=col, dtype=_DTYPES[f.dtype]) for col, f, _ in C.subject_columns()],
        description="Daily per-subject supply/demand snapshots, keyed by the constant marketplace id.",
    )
    request = RequestSource(name="scoring_request",
                            schema=[Field(name=C.REQUEST_TIME_FIELD, dtype=Int64)])

    recency_fields = [f for f in C.ON_DEMAND if f.view == C.RECENCY_VIEW]
    trend_fields = [f for f in C.ON_DEMAND if f.view == C.TREND_VIEW]

    # Python mode (dict of lists in, dict of lists out): the same function serves Feast's online
    # path, offline retrieval and our fast online path without a pandas frame per request; the
    # formulas are the declarations (features.declarations.ON_DEMAND, run by features.on_demand).
    @on_demand_feature_view(
        sources=[customer_view[list(dict.fromkeys(n for f in recency_fields for n in f.inputs))], request],
        schema=[Field(name=f.name, dtype=Float64) for f in recency_fields], mode="python",
        description="Time since last activity, computed from the request time (never the wall clock).",
    )
    def customer_recency(inputs: dict) -> dict:
        from features.catalog import (  # lazy: Feast serializes on-demand functions; their imports must be in the body
            RECENCY_VIEW,
            evaluate_on_demand,
        )

        return evaluate_on_demand(RECENCY_VIEW, inputs)

    @on_demand_feature_view(
        sources=[customer_view[sorted({n for f in trend_fields for n in f.inputs})]],
        schema=[Field(name=f.name, dtype=Float64) for f in trend_fields], mode="python",
        description="Short- versus long-window changes of the customer's behaviour.",
    )
    def customer_trends(inputs: dict) -> dict:
        from features.catalog import (  # lazy: Feast serializes on-demand functions; their imports must be in the body
            TREND_VIEW,
            evaluate_on_demand,
        )

        return evaluate_on_demand(TREND_VIEW, inputs)

    model_customer = [m["name"] for m in C.model_features() if m["view"] == C.CUSTOMER_VIEW]
    service = FeatureService(
        name=C.FEATURE_SERVICE,
        features=[customer_view[model_customer], tutor_view, subject_view, marketplace_view, customer_recency,
                  customer_trends],
        description="The multi-task model's whole input vector (the tutor view is keyed by the primary tutor, "
                    "the subject view by the primary subject).",
    )
    objs = [customer, tutor, subject, marketplace, customer_source, customer_push, tutor_view.batch_source,
            subject_view.batch_source, marketplace_view.batch_source, customer_view, tutor_view, subject_view,
            marketplace_view, request,
            customer_recency, customer_trends, service]
    return {o.name: o for o in objs}
