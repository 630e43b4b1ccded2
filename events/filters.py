"""A tiny predicate language over event fields, evaluable by both engines.

A feature declaration says *which* events feed a metric with these
predicates; the offline backfill renders them to SQL and the stream ingester
evaluates them on a decoded record, so the two can never drift apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


def _sql_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


@dataclass(frozen=True)
class Cond:
    """``field op value``; op in ==, <, >, is_true, not_null."""

    field: str
    op: str
    value: Any = None

    def sql(self) -> str:
        f = f'"{self.field}"'
        if self.op == "==":
            return f"{f} = {_sql_literal(self.value)}"
        if self.op in ("<", ">"):
            return f"{f} {self.op} {_sql_literal(self.value)}"
        if self.op == "is_true":
            return f"{f} IS TRUE"
        if self.op == "not_null":
            return f"{f} IS NOT NULL"
        raise ValueError(f"unknown op {self.op!r}")

    def test(self, record: Mapping[str, Any]) -> bool:
        v = record.get(self.field)
        if self.op == "not_null":
            return v is not None
        if v is None:
            return False  # SQL three-valued logic: a comparison with NULL is not true
        if self.op == "==":
            return v == self.value
        if self.op == "<":
            return v < self.value
        if self.op == ">":
            return v > self.value
        if self.op == "is_true":
            return v is True
        raise ValueError(f"unknown op {self.op!r}")

    def describe(self) -> str:
        return {"==": f"{self.field} = {self.value!r}", "<": f"{self.field} < {self.value}",
                ">": f"{self.field} > {self.value}", "is_true": f"{self.field} is true",
                "not_null": f"{self.field} is present"}[self.op]


def eq(field: str, value: Any) -> Cond:
    return Cond(field, "==", value)


def lt(field: str, value: float) -> Cond:
    return Cond(field, "<", value)


def is_true(field: str) -> Cond:
    return Cond(field, "is_true")


def present(field: str) -> Cond:
    return Cond(field, "not_null")


@dataclass(frozen=True)
class EventFilter:
    """Events of some types that satisfy every condition."""

    event_types: tuple[str, ...]
    where: tuple[Cond, ...] = ()

    def sql(self) -> str:
        types = ", ".join(_sql_literal(t) for t in self.event_types)
        parts = [f"event_type IN ({types})"] + [c.sql() for c in self.where]
        return "(" + " AND ".join(parts) + ")"

    def test(self, record: Mapping[str, Any]) -> bool:
        return record.get("event_type") in self.event_types and all(c.test(record) for c in self.where)

    def describe(self) -> str:
        s = " or ".join(f"`{t}`" for t in self.event_types)
        if self.where:
            s += " where " + " and ".join(c.describe() for c in self.where)
        return s


def events(*event_types: str, where: tuple[Cond, ...] | Cond = ()) -> EventFilter:
    if isinstance(where, Cond):
        where = (where,)
    return EventFilter(tuple(event_types), tuple(where))
