"""What is derived from the declarations: the per-subject columns, the model's inputs, the
validation specs. No feature is named here: every rule reads a declared attribute or a kind."""
from __future__ import annotations

from events.contract import SUBJECTS

from .declarations import (
    CUSTOMER_FEATURES,
    CUSTOMER_VIEW,
    FEATURE_SERVICE,
    MARKETPLACE_VIEW,
    METRICS,
    ON_DEMAND,
    SUBJECT_FEATURES,
    SUBJECT_VIEW,
    TUTOR_FEATURES,
    TUTOR_VIEW,
)
from .kinds import GroupFeature, LatestValue, LifetimeRatio, WindowRatio, WindowSum

METRIC_BY_NAME = {m.name: m for m in METRICS}


# --------------------------------------------------------------------------- per-subject columns
def subject_columns() -> list[tuple[str, GroupFeature, str]]:
    """(column, feature, subject) for every per-subject marketplace column."""
    return [(f"{f.name}_{s}", f, s) for f in SUBJECT_FEATURES for s in SUBJECTS]


SUBJECT_FEATURE_PREFIX = "subject_"


def subject_view_columns() -> list[tuple[str, GroupFeature]]:
    """(column, feature) of the subject view: the same per-subject values as the marketplace
    columns, one row per subject (a customer's own subject is looked up by its ``key_of`` feature)."""
    return [(SUBJECT_FEATURE_PREFIX + f.name, f) for f in SUBJECT_FEATURES]


# --------------------------------------------------------------------------- the model's input vector
# The schema kind of the 80 wide per-subject marketplace columns. They are the same for every
# customer at a given time, so under a time split they mostly identify the date and the net
# overfits on them (docs/model.md). They stay in the feature service (the spec lists them) and in
# the inference contract; the preprocessing validates them (a number or null) and drops them.
# The customer's own subject's values come from the subject view instead.
CONTEXT_KIND = "context"


#: batch view -> the customer feature that keys its second lookup (declared ``key_of``)
LOOKUP_KEYS = {f.key_of: f.name for f in CUSTOMER_FEATURES if f.key_of is not None}


def is_model_input(f) -> bool:
    """A customer feature the model learns from: not declared ``model_input=False`` (the last-seen
    timestamps and the lifetime counts that only feed the on-demand views) and not a lookup key of
    a batch view (``key_of``: the primary tutor and subject)."""
    return f.model_input and f.key_of is None


def model_features() -> list[dict]:
    """The feature service's columns with the kind the model's preprocessing needs."""
    out = []
    for f in CUSTOMER_FEATURES:
        if not is_model_input(f):
            continue
        entry = {"name": f.name, "view": CUSTOMER_VIEW}
        if isinstance(f, LatestValue) and f.ordinal:
            entry.update(kind="ordinal", categories=list(f.categories))
        elif isinstance(f, LatestValue) and f.dtype == "string":
            entry.update(kind="categorical", categories=list(f.categories))
        elif f.dtype == "bool":
            entry.update(kind="boolean")
        else:
            entry.update(kind="numeric")
        out.append(entry)
    out += [{"name": f.name, "view": TUTOR_VIEW, "kind": "numeric"} for f in TUTOR_FEATURES]
    out += [{"name": c, "view": SUBJECT_VIEW, "kind": "numeric"} for c, _ in subject_view_columns()]
    out += [{"name": c, "view": MARKETPLACE_VIEW, "kind": CONTEXT_KIND} for c, _, _ in subject_columns()]
    out += [{"name": f.name, "view": f.view, "kind": "numeric"} for f in ON_DEMAND]
    return out


def model_input_schema() -> dict:
    return {"feature_service": FEATURE_SERVICE,
            "features": [{k: v for k, v in f.items() if k != "view"} for f in model_features()]}


# --------------------------------------------------------------------------- drift roles
def drift_roles() -> dict[str, str]:
    """How serving drift judges each served column (validation.drift roles): ``daily`` for the batch
    views' per-day values shared by many customers (marketplace, subject: one value per day, judged
    as a series of days), ``tenure`` for what grows with the customer's age by construction (declared
    ``grows_with_tenure``: compared at a matching tenure), ``entity`` (row-weighted) for the rest."""
    roles = {}
    for f in (*CUSTOMER_FEATURES, *ON_DEMAND):
        roles[f.name] = "tenure" if f.grows_with_tenure else "entity"
    roles.update({f.name: "entity" for f in TUTOR_FEATURES})  # one tutor's value per customer
    roles.update({c: "daily" for c, _ in subject_view_columns()})
    roles.update({c: "daily" for c, _, _ in subject_columns()})
    return roles


# --------------------------------------------------------------------------- data-quality specs
# Kinds computed from sums of non-negative metrics: never below 0 (ratios included).
_NON_NEGATIVE = (WindowSum, WindowRatio, LifetimeRatio, GroupFeature)


def column_specs(view: str | None = None) -> list[dict]:
    """Column rules of a snapshot table for the validation suites (validation.specs.ColumnSpec fields).

    Counts are >= 0, bounded rates lie in [0, 1], and only features whose null rule allows it
    may be null. ``view`` defaults to the customer view.
    """
    view = view or CUSTOMER_VIEW
    if view == CUSTOMER_VIEW:
        feats = [(f.name, f) for f in CUSTOMER_FEATURES]
    elif view == TUTOR_VIEW:
        feats = [(f.name, f) for f in TUTOR_FEATURES]
    elif view == MARKETPLACE_VIEW:
        feats = [(c, f) for c, f, _ in subject_columns()]
    elif view == SUBJECT_VIEW:
        feats = subject_view_columns()
    else:
        raise ValueError(f"view: expected one of {CUSTOMER_VIEW}, {TUTOR_VIEW}, {SUBJECT_VIEW}, {MARKETPLACE_VIEW}; "
                         f"got {view!r}")
    specs = []
    for name, f in feats:
        spec = {"name": name, "nullable": f.nullable}
        kind = f.kind
        if kind == "timestamp_us":
            spec.update(kind="numeric", min=0)
        elif kind in ("count", "rate"):
            spec.update(kind=kind)
        elif kind == "categorical":
            spec.update(kind="categorical")
            if getattr(f, "categories", ()):
                spec["values"] = list(f.categories)
        elif kind == "boolean":
            spec.update(kind="boolean")
        else:
            spec.update(kind="numeric")
            if isinstance(f, _NON_NEGATIVE):
                spec["min"] = 0
        specs.append(spec)
    return specs
