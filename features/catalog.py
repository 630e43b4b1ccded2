"""The feature catalog: the features room's public face (``from features import catalog as C``).

Every feature is declared once in ``features.declarations``; the kinds are in
``features.kinds``, the request-time functions in ``features.on_demand``, what is
derived from the declarations (model inputs, validation specs) in
``features.derivations``. Both engines (``features.backfill``, ``features.state``)
and docs/features.md (``features.docs``) read them through this module.
"""
from __future__ import annotations

from .declarations import (
    BATCH_VIEWS,
    CUSTOMER_FEATURES,
    CUSTOMER_VIEW,
    ENTITY_KEYS,
    FEATURE_SERVICE,
    MARKETPLACE_KEY,
    MARKETPLACE_VIEW,
    MAX_WINDOW_DAYS,
    METRICS,
    ON_DEMAND,
    RECENCY_VIEW,
    REQUEST_TIME_FIELD,
    SUBJECT_FEATURES,
    SUBJECT_METRICS,
    SUBJECT_VIEW,
    SUBJECT_WINDOW_DAYS,
    TENURE_FEATURE,
    TREND_VIEW,
    TUTOR_FEATURES,
    TUTOR_METRICS,
    TUTOR_VIEW,
    TUTOR_WINDOW_DAYS,
    WINDOWS,
)
from .derivations import (
    CONTEXT_KIND,
    LOOKUP_KEYS,
    METRIC_BY_NAME,
    SUBJECT_FEATURE_PREFIX,
    column_specs,
    drift_roles,
    is_model_input,
    model_features,
    model_input_schema,
    subject_columns,
    subject_view_columns,
)
from .kinds import (
    FIXED_POINT,
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
from .on_demand import evaluate_on_demand

__all__ = [
    "BATCH_VIEWS", "CONTEXT_KIND", "CUSTOMER_FEATURES", "CUSTOMER_VIEW", "ENTITY_KEYS", "FEATURE_SERVICE",
    "FIXED_POINT", "LOOKUP_KEYS", "MARKETPLACE_KEY", "MARKETPLACE_VIEW", "MAX_WINDOW_DAYS", "METRICS", "METRIC_BY_NAME",
    "ON_DEMAND", "RECENCY_VIEW", "REQUEST_TIME_FIELD", "SUBJECT_FEATURES", "SUBJECT_FEATURE_PREFIX",
    "SUBJECT_METRICS", "SUBJECT_VIEW", "SUBJECT_WINDOW_DAYS", "TENURE_FEATURE", "TREND_VIEW", "TUTOR_FEATURES",
    "TUTOR_METRICS", "TUTOR_VIEW", "TUTOR_WINDOW_DAYS", "WINDOWS",
    "CustomerFeature", "DistinctInWindow", "FirstAbove", "GroupFeature", "GroupMetric", "LastSeen", "LatestValue",
    "LifetimeRatio", "LifetimeSum", "Metric", "OnDemand", "PrimaryKey", "PrimaryShare", "WindowRatio", "WindowSum",
    "column_specs", "drift_roles", "evaluate_on_demand", "is_model_input", "model_features", "model_input_schema",
    "subject_columns", "subject_view_columns",
]
