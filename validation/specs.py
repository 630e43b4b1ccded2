"""The interface between a feature catalog and the feature-table suite builder.

The catalog (``features/catalog.py``) describes each served/stored column as a
``ColumnSpec``; ``validation.suites.feature_suite`` turns a list of them into a
Great Expectations suite. Nothing here imports the catalog, so either side can
change its internals without touching the other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("count", "rate", "numeric", "timestamp", "categorical", "boolean")


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a feature table.

    kind:      count (>= 0), rate (in [0, 1]), numeric, timestamp, categorical, boolean.
    nullable:  False means the column must have no nulls (e.g. window counts; an
               average over no events is null, so averages are nullable).
    min / max: optional extra bounds (inclusive); for timestamps, datetimes.
    values:    optional allowed values for a categorical column.
    """

    name: str
    kind: str
    nullable: bool = True
    min: Any = None
    max: Any = None
    values: tuple | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("ColumnSpec.name: expected a non-empty column name")
        if self.kind not in KINDS:
            raise ValueError(f"ColumnSpec {self.name!r}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"ColumnSpec {self.name!r}: min {self.min!r} > max {self.max!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "ColumnSpec":
        values = d.get("values")
        return cls(name=d["name"], kind=d["kind"], nullable=bool(d.get("nullable", True)),
                   min=d.get("min"), max=d.get("max"), values=tuple(values) if values is not None else None)
