"""Great Expectations suites generated from declarations, never written per column.

* ``event_log_suite``   - from ``events.contract.EVENT_MODELS``: required/optional
  fields per event type, Literal choices, numeric bounds, string lengths and
  patterns, column types from ``EVENT_LOG_SCHEMA``; plus unique event ids, known
  event types and timestamps in an expected span.
* ``feature_suite``     - from a list of ``validation.specs.ColumnSpec`` (the catalog).
* ``training_set_suite``- labels, label rates, rows per split, point-in-time
  correctness of feature timestamps, plus the feature checks when specs are given.

The log is one wide table holding every event type, so per-type checks carry a
GX ``row_condition`` (a ``Condition`` object: ``Column("event_type") == t``;
string conditions are deprecated since GX 1.9).
"""
from __future__ import annotations

import typing
from datetime import datetime, timezone
from typing import Any, Iterable, Literal, Mapping, Sequence

import annotated_types as at
import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.expectations.row_conditions import Column

from events.contract import EVENT_LOG_SCHEMA, EVENT_MODELS
from validation import _gx  # noqa: F401  (quiet GX before it is first imported)
from validation.specs import ColumnSpec

EVENT_KEY_COLUMNS = ("event_id", "event_type", "customer_id", "tutor_id", "timestamp")
LABEL_COLUMNS = ("churn_30d", "ib_calls_14d")
SPLITS = ("train", "validation", "test")
DEFAULT_LABEL_RATES = {"churn_30d": (0.005, 0.6), "ib_calls_14d": (0.005, 0.6)}
DEFAULT_MIN_ROWS_PER_SPLIT = {"train": 1, "validation": 1, "test": 1}

# Accepted pandas dtypes (and, for object columns, Python value types) per Arrow type
# of EVENT_LOG_SCHEMA. Integers arrive as float64 when a nullable int column has
# nulls (Parquet -> pandas), so float64 is accepted for them; strings are never.
_TYPE_LISTS = {
    "string": ["object", "str", "string", "StringDtype"],
    "double": ["float64", "Float64", "float32", "int64", "Int64", "float", "int"],
    "int64": ["int64", "Int64", "int32", "float64", "int"],
    "bool": ["bool", "boolean", "BooleanDtype", "object"],
}


def _new_suite(name: str) -> gx.ExpectationSuite:
    _gx.get_context()  # GX needs an active context even to build a suite
    return gx.ExpectationSuite(name=name)


def _meta(why: str, **extra: Any) -> dict:
    return {"why": why, **extra}


# --------------------------------------------------------------------------- events

def _walk(annotation: Any) -> Iterable[Any]:
    """Yield the annotation and every nested type argument (Optional, Annotated, Literal...)."""
    stack = [annotation]
    while stack:
        a = stack.pop()
        yield a
        stack.extend(typing.get_args(a))


def _constraints(info) -> dict:
    """Numeric bounds, lengths, pattern and Literal choices declared on a pydantic field."""
    metadata = list(info.metadata)
    literal: list | None = None
    for a in _walk(info.annotation):
        if typing.get_origin(a) is typing.Annotated:
            for m in typing.get_args(a)[1:]:
                metadata.extend(getattr(m, "metadata", [m]))
        if typing.get_origin(a) is Literal:
            literal = list(typing.get_args(a))
    out: dict[str, Any] = {}
    for m in metadata:
        if isinstance(m, at.Ge):
            out["min"], out["strict_min"] = m.ge, False
        elif isinstance(m, at.Gt):
            out["min"], out["strict_min"] = m.gt, True
        elif isinstance(m, at.Le):
            out["max"], out["strict_max"] = m.le, False
        elif isinstance(m, at.Lt):
            out["max"], out["strict_max"] = m.lt, True
        elif isinstance(m, at.MinLen):
            out["min_length"] = m.min_length
        elif isinstance(m, at.MaxLen):
            out["max_length"] = m.max_length
        elif getattr(m, "pattern", None):
            out["pattern"] = m.pattern
    if literal is not None:
        out["values"] = literal
    return out


def _is_required(info) -> bool:
    # event_type / schema_version have non-None defaults but are always written.
    return info.is_required() or info.default is not None


def event_log_suite(start: datetime | None = None, end: datetime | None = None, *,
                    models: Mapping[str, type] | None = None, name: str = "event_log") -> gx.ExpectationSuite:
    """The raw event log suite: every constraint of the contract, per event type.

    ``start``/``end`` bound the timestamps (inclusive, tz-aware); None leaves that side open.
    """

    models = dict(models or EVENT_MODELS)
    suite = _new_suite(name)
    add = suite.add_expectation

    for f in EVENT_LOG_SCHEMA:
        add(gxe.ExpectColumnToExist(column=f.name, meta=_meta("column of EVENT_LOG_SCHEMA")))
    for f in EVENT_LOG_SCHEMA:
        type_list = _TYPE_LISTS.get(str(f.type))
        if type_list:  # timestamps are checked by the span expectation below
            add(gxe.ExpectColumnValuesToBeInTypeList(column=f.name, type_list=type_list,
                                                     meta=_meta(f"strict type: {f.type}")))
    add(gxe.ExpectColumnValuesToNotBeNull(column="event_id", meta=_meta("every record has an id")))
    add(gxe.ExpectColumnValuesToBeUnique(column="event_id", meta=_meta("at-least-once delivery must be deduplicated")))
    add(gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=sorted(models),
                                        meta=_meta("known event types")))
    add(gxe.ExpectColumnValuesToNotBeNull(column="event_type", meta=_meta("every record has a type")))
    add(gxe.ExpectColumnValuesToNotBeNull(column="timestamp", meta=_meta("event time is required")))
    if start is not None or end is not None:
        add(gxe.ExpectColumnValuesToBeBetween(column="timestamp", min_value=_utc(start), max_value=_utc(end),
                                              meta=_meta("timestamps within the expected span")))

    fields_by_column: dict[str, set[str]] = {}
    for event_type, model in models.items():
        is_type = Column("event_type") == event_type
        for field, info in model.model_fields.items():
            fields_by_column.setdefault(field, set()).add(event_type)
            if field in ("event_type", "timestamp", "event_id"):
                continue  # checked once for the whole log above
            c = _constraints(info)
            why = f"{model.__name__}.{field}"
            if _is_required(info):
                add(gxe.ExpectColumnValuesToNotBeNull(column=field, row_condition=is_type,
                                                      meta=_meta(f"{why} is required")))
            if "values" in c:
                add(gxe.ExpectColumnValuesToBeInSet(column=field, value_set=c["values"], row_condition=is_type,
                                                    meta=_meta(f"{why} Literal choices")))
            if "min" in c or "max" in c:
                add(gxe.ExpectColumnValuesToBeBetween(
                    column=field, min_value=c.get("min"), max_value=c.get("max"),
                    strict_min=c.get("strict_min", False), strict_max=c.get("strict_max", False),
                    row_condition=is_type, meta=_meta(f"{why} bounds")))
            if "min_length" in c or "max_length" in c:
                add(gxe.ExpectColumnValueLengthsToBeBetween(
                    column=field, min_value=c.get("min_length"), max_value=c.get("max_length"),
                    row_condition=is_type, meta=_meta(f"{why} length")))
            if "pattern" in c:
                add(gxe.ExpectColumnValuesToMatchRegex(column=field, regex=c["pattern"], row_condition=is_type,
                                                       meta=_meta(f"{why} pattern")))
    # extra="forbid": a field that is not part of a type's model must be absent (null) there.
    for f in EVENT_LOG_SCHEMA:
        owners = fields_by_column.get(f.name, set())
        if owners and owners != set(models):
            add(gxe.ExpectColumnValuesToBeNull(
                column=f.name, row_condition=Column("event_type").is_in(sorted(set(models) - owners)),
                meta=_meta(f"only {', '.join(sorted(owners))} carry {f.name}")))
    if "session_completed" in models:
        _session_status_rules(suite)
    suite.meta["key_columns"] = list(EVENT_KEY_COLUMNS)
    return suite


def _session_status_rules(suite: gx.ExpectationSuite) -> None:
    """SessionCompleted's model validator: cross-field rules are code, not field metadata."""
    sc = Column("event_type") == "session_completed"
    status = Column("status")
    add = suite.add_expectation
    why = "SessionCompleted status rules"
    add(gxe.ExpectColumnValuesToNotBeNull(column="cancelled_by", row_condition=sc & (status == "cancelled"),
                                          meta=_meta(f"{why}: cancelled_by required when cancelled")))
    add(gxe.ExpectColumnValuesToBeNull(column="cancelled_by", row_condition=sc & (status != "cancelled"),
                                       meta=_meta(f"{why}: cancelled_by only when cancelled")))
    add(gxe.ExpectColumnValuesToBeNull(column="student_rating", row_condition=sc & (status != "completed"),
                                       meta=_meta(f"{why}: rating only for completed sessions")))
    add(gxe.ExpectColumnValuesToNotBeNull(column="duration_minutes", row_condition=sc & (status == "completed"),
                                          meta=_meta(f"{why}: duration required when completed")))


def _utc(ts: datetime | None):
    if ts is None:
        return None
    if ts.tzinfo is None:
        raise ValueError(f"expected a timezone-aware timestamp, got naive {ts!r}")
    return ts.astimezone(timezone.utc)


# --------------------------------------------------------------------------- features

def _key_list(entity_key: str | Sequence[str]) -> list[str]:
    return [entity_key] if isinstance(entity_key, str) else list(entity_key)


def add_feature_expectations(suite: gx.ExpectationSuite, columns: Sequence[ColumnSpec],
                             timestamp_column: str = "event_timestamp") -> None:
    """Per-column checks derived from each ColumnSpec's kind, nullability and bounds."""
    add = suite.add_expectation
    for spec in columns:
        col = spec.name
        add(gxe.ExpectColumnToExist(column=col, meta=_meta(f"declared {spec.kind} feature")))
        if not spec.nullable:
            add(gxe.ExpectColumnValuesToNotBeNull(column=col, meta=_meta("declared non-nullable")))
        lo, hi = spec.min, spec.max
        if spec.kind == "count":
            lo = 0 if lo is None else max(lo, 0)
        elif spec.kind == "rate":
            lo = 0.0 if lo is None else max(lo, 0.0)
            hi = 1.0 if hi is None else min(hi, 1.0)
        if spec.kind == "boolean":
            add(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=[0, 1, True, False],
                                                meta=_meta("boolean feature")))
        elif spec.kind == "categorical":
            if spec.values is not None:
                add(gxe.ExpectColumnValuesToBeInSet(column=col, value_set=list(spec.values),
                                                    meta=_meta("declared categories")))
        elif lo is not None or hi is not None:
            add(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=lo, max_value=hi,
                                                  meta=_meta(f"{spec.kind} bounds")))
        if spec.kind == "timestamp" and col != timestamp_column:
            add(_not_after(col, timestamp_column))


def _not_after(ts_col: str, timestamp_column: str):
    # Point-in-time correctness: a feature computed as of t cannot have seen anything after t.
    return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=timestamp_column, column_B=ts_col, or_equal=True, ignore_row_if="either_value_is_missing",
        meta=_meta(f"feature timestamp {ts_col} <= {timestamp_column} (no rows from the future)"))


def feature_suite(columns: Sequence[ColumnSpec], entity_key: str | Sequence[str] = "customer_id",
                  timestamp_column: str = "event_timestamp", name: str = "features") -> gx.ExpectationSuite:
    """A feature snapshot table: one row per (entity, event_timestamp), columns as declared."""
    keys = _key_list(entity_key)
    suite = _new_suite(name)
    add = suite.add_expectation
    for k in [*keys, timestamp_column]:
        add(gxe.ExpectColumnToExist(column=k, meta=_meta("key column")))
        add(gxe.ExpectColumnValuesToNotBeNull(column=k, meta=_meta("key column")))
    add(gxe.ExpectCompoundColumnsToBeUnique(column_list=[*keys, timestamp_column],
                                            meta=_meta("one row per entity and timestamp")))
    add_feature_expectations(suite, columns, timestamp_column)
    suite.meta["key_columns"] = [*keys, timestamp_column]
    return suite


# --------------------------------------------------------------------------- training sets

def training_set_suite(columns: Iterable[str], *, feature_specs: Sequence[ColumnSpec] = (),
                       feature_timestamp_columns: Sequence[str] | None = None,
                       label_rates: Mapping[str, tuple[float, float]] | None = None,
                       min_rows_per_split: Mapping[str, int] | None = None,
                       entity_key: str | Sequence[str] = "customer_id",
                       timestamp_column: str = "event_timestamp", name: str = "training_set") -> gx.ExpectationSuite:
    """A point-in-time training set.

    ``columns`` are the dataset's column names: feature timestamp columns default
    to those ending in ``__ts``. ``label_rates`` maps a 0/1 label to the allowed
    (min, max) positive rate; ``min_rows_per_split`` the minimum rows per split.
    """
    columns = list(columns)
    keys = _key_list(entity_key)
    label_rates = dict(DEFAULT_LABEL_RATES if label_rates is None else label_rates)
    min_rows = dict(DEFAULT_MIN_ROWS_PER_SPLIT if min_rows_per_split is None else min_rows_per_split)
    ts_cols = list(feature_timestamp_columns) if feature_timestamp_columns is not None else [
        c for c in columns if c.endswith("__ts")]
    suite = _new_suite(name)
    add = suite.add_expectation
    for k in [*keys, timestamp_column, "split"]:
        add(gxe.ExpectColumnToExist(column=k, meta=_meta("required dataset column")))
        add(gxe.ExpectColumnValuesToNotBeNull(column=k, meta=_meta("required dataset column")))
    add(gxe.ExpectCompoundColumnsToBeUnique(column_list=[*keys, timestamp_column],
                                            meta=_meta("one example per entity and timestamp")))
    add(gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS), meta=_meta("known splits")))
    for split, n in min_rows.items():
        add(gxe.ExpectTableRowCountToBeBetween(min_value=int(n), row_condition=Column("split") == split,
                                               meta=_meta(f"at least {n} rows in {split}", split=split)))
    for label in LABEL_COLUMNS:
        add(gxe.ExpectColumnToExist(column=label, meta=_meta("label column")))
        add(gxe.ExpectColumnValuesToNotBeNull(column=label, meta=_meta("labels are never missing")))
        add(gxe.ExpectColumnValuesToBeInSet(column=label, value_set=[0, 1], meta=_meta("binary label")))
        if label in label_rates:
            lo, hi = label_rates[label]
            add(gxe.ExpectColumnMeanToBeBetween(column=label, min_value=lo, max_value=hi,
                                                meta=_meta(f"positive rate of {label} within bounds")))
    add(gxe.ExpectColumnToExist(column="health_score", meta=_meta("label column")))
    add(gxe.ExpectColumnValuesToNotBeNull(column="health_score", meta=_meta("labels are never missing")))
    add(gxe.ExpectColumnValuesToBeBetween(column="health_score", min_value=0, max_value=100,
                                          meta=_meta("health score is 0-100")))
    specs_ts = {s.name for s in feature_specs if s.kind == "timestamp"}
    if feature_specs:
        add_feature_expectations(suite, feature_specs, timestamp_column)
    for c in ts_cols:
        if c not in specs_ts and c != timestamp_column:
            add(_not_after(c, timestamp_column))
    suite.meta["key_columns"] = [*keys, timestamp_column, "split"]
    return suite
