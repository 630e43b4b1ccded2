"""The training-set quality gate: the validation suite, run before anything is fitted.

The suite is ``validation.suites.training_set_suite`` (labels present and binary, label
rates within bounds, rows in every split, one example per (customer, t), feature
snapshot timestamps ``*__ts`` <= the row's t) plus per-feature checks derived from the
feature schema and, where a feature is in the catalog, the catalog's declaration
(counts >= 0, rates in [0, 1], non-nullable window counts, declared ordinal tiers).
A failure raises ``validation.gate.DataQualityError`` whose message lists every failing
expectation with a sample of offending rows.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

#: one shared default for the dataset step and training; the DuckDB engine runs the
#: whole suite in one scan per condition (GX on pandas costs seconds per expectation)
ENGINE = "duckdb"


def _catalog_kinds() -> dict[str, tuple[str, bool, tuple | None]]:
    """feature name -> (validation kind, nullable, categories) from the catalog, if importable."""
    try:
        from features import catalog as C  # lazy: the SageMaker source dir ships training/ and validation/ only; the catalog is optional there
    except ImportError:  # the SageMaker source dir ships only training/ and validation/
        return {}
    out: dict[str, tuple[str, bool, tuple | None]] = {}
    for f in C.CUSTOMER_FEATURES:
        cats = tuple(getattr(f, "categories", ()) or ()) or None
        kind = f.kind if f.kind in ("count", "rate", "numeric", "boolean", "categorical") else "numeric"
        out[f.name] = (kind, bool(f.nullable), cats)
    for f in C.TUTOR_FEATURES:
        out[f.name] = (f.kind, True, None)  # null when the customer has no primary tutor yet
    for col, f in C.subject_view_columns():
        out[col] = (f.kind, True, None)  # null when the customer has no primary subject (or no snapshot yet)
    for col, f, _ in C.subject_columns():
        out[col] = (f.kind, bool(f.nullable), None)
    for f in C.ON_DEMAND:
        out[f.name] = ("numeric", True, None)
    return out


def feature_specs(schema: Mapping[str, Any]):
    """ColumnSpecs for the schema's features (catalog declaration first, then the schema kind)."""
    from validation.specs import ColumnSpec  # lazy: validation loads Great Expectations, needed only when the gate runs

    catalog = _catalog_kinds()
    specs = []
    for f in schema["features"]:
        name = f["name"]
        if name in catalog:
            kind, nullable, _ = catalog[name]
            # categories: only ordinals are closed (an undeclared tier is an error in preprocessing);
            # an undeclared categorical value is the model's unknown bucket, not bad data
            values = tuple(f["categories"]) if f["kind"] == "ordinal" and f.get("categories") else None
            specs.append(ColumnSpec(name, "categorical" if f["kind"] in ("categorical", "ordinal") else kind,
                                    nullable=nullable, values=values))
        elif f["kind"] in ("categorical", "ordinal"):
            # undeclared categories are allowed for categoricals (the unknown bucket), not for ordinals
            values = tuple(f["categories"]) if f["kind"] == "ordinal" and f.get("categories") else None
            specs.append(ColumnSpec(name, "categorical", values=values))
        elif f["kind"] == "boolean":
            specs.append(ColumnSpec(name, "boolean"))
        else:
            specs.append(ColumnSpec(name, "numeric"))
    return specs


def check_training_set(frame: pd.DataFrame, schema: Mapping[str, Any], *, report_path=None,
                       label_rates: Mapping[str, tuple[float, float]] | None = None,
                       min_rows_per_split: Mapping[str, int] | None = None, engine: str = ENGINE,
                       raise_on_failure: bool = True):
    """Run the training-set suite on ``frame``; raises DataQualityError naming the failing checks."""
    from validation.gate import run_gate  # lazy: validation loads Great Expectations, needed only when the gate runs
    from validation.suites import training_set_suite  # lazy: validation loads Great Expectations, needed only when the gate runs

    suite = training_set_suite(frame.columns, feature_specs=feature_specs(schema), label_rates=label_rates,
                               min_rows_per_split=min_rows_per_split,
                               name=f"training_set_{schema.get('feature_service', 'dataset')}")
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    return run_gate(suite.name, frame, suite, report_path=report_path, engine=engine,
                    raise_on_failure=raise_on_failure)
