"""The few SQL spellings in which DuckDB and Spark SQL differ, and nothing else.

The backfill's statement generator (``features.backfill_sql``) writes plain windowed SQL and asks
a dialect only for the constructs the two engines spell differently; everything else (window
frames, ``CASE``, ``COALESCE``, ``GROUP BY`` ordinals, ``VALUES``) is common to both. Column lists
are always explicit (no ``* EXCLUDE`` / ``* REPLACE``), so no dialect needs star modifiers.

Both spellings of each construct compute the same value with the same type, so the two engines'
tables agree bit for bit (tests/test_backfill_spark.py). Notable points:

* doubles: Spark reads ``0.1`` as a DECIMAL literal; the Spark dialect writes ``0.1D`` so every
  arithmetic is IEEE double in both engines.
* ``range_rows(lo, hi)`` is the rows ``lo .. hi-1`` (empty when ``hi <= lo``): Spark's
  ``sequence`` is inclusive and counts down when its bounds are reversed, so it is guarded.
* casts from DOUBLE to BIGINT are only ever applied to integral values (DuckDB rounds, Spark
  truncates: they agree on integers).
"""
from __future__ import annotations

import dataclasses

_TYPES = ("BIGINT", "DOUBLE", "STRING")


@dataclasses.dataclass(frozen=True)
class Dialect:
    name: str

    # ------------------------------------------------------------------ literals and casts
    def double(self, v: float) -> str:
        """A DOUBLE literal."""
        raise NotImplementedError

    def cast(self, expr: str, to: str) -> str:
        if to not in _TYPES:
            raise ValueError(f"cast: expected one of {_TYPES}, got {to!r}")
        return f"CAST({expr} AS {self._type(to)})"

    def _type(self, to: str) -> str:
        return to

    # ------------------------------------------------------------------ functions
    def int_div(self, a: str, b: str) -> str:
        """Integer division of non-negative integers."""
        raise NotImplementedError

    def epoch_us(self, col: str) -> str:
        """A TIMESTAMP column as integer microseconds since the epoch."""
        raise NotImplementedError

    def timestamp_us(self, expr: str) -> str:
        """Integer microseconds since the epoch as a UTC timestamp (Arrow ``timestamp[us, tz=UTC]``)."""
        raise NotImplementedError

    def arg_max(self, value: str, order: str, where: str) -> str:
        """``value`` of the row with the largest ``order`` among the group's rows where ``where`` holds."""
        raise NotImplementedError

    def arg_min(self, value: str, order: str, where: str) -> str:
        raise NotImplementedError

    def first_ignore_nulls(self, expr: str) -> str:
        """FIRST_VALUE skipping nulls (followed by an OVER clause)."""
        raise NotImplementedError

    def last_ignore_nulls(self, expr: str) -> str:
        raise NotImplementedError

    def range_rows(self, lo: str, hi: str) -> str:
        """A select-list expression that yields one row per integer in ``[lo, hi)``."""
        raise NotImplementedError

    def anti_join(self) -> str:
        """The keyword(s) of a left anti join."""
        return "ANTI JOIN"


class DuckDBDialect(Dialect):
    def double(self, v: float) -> str:
        return repr(float(v))        # DuckDB: DECIMAL op DOUBLE is DOUBLE; the text is kept as it always was

    def _type(self, to: str) -> str:
        return "VARCHAR" if to == "STRING" else to

    def int_div(self, a: str, b: str) -> str:
        return f"{a} // {b}"

    def epoch_us(self, col: str) -> str:
        return f"epoch_us({col})"

    def timestamp_us(self, expr: str) -> str:
        return f"make_timestamp({expr})::TIMESTAMPTZ"

    def arg_max(self, value: str, order: str, where: str) -> str:
        return f"arg_max({value}, {order}) FILTER (WHERE {where})"

    def arg_min(self, value: str, order: str, where: str) -> str:
        return f"arg_min({value}, {order}) FILTER (WHERE {where})"

    def first_ignore_nulls(self, expr: str) -> str:
        return f"FIRST_VALUE({expr} IGNORE NULLS)"

    def last_ignore_nulls(self, expr: str) -> str:
        return f"LAST_VALUE({expr} IGNORE NULLS)"

    def range_rows(self, lo: str, hi: str) -> str:
        return f"unnest(range({lo}, {hi}))"


class SparkDialect(Dialect):
    def double(self, v: float) -> str:
        return f"{float(v)!r}D"      # a bare 0.1 is DECIMAL in Spark SQL

    def _type(self, to: str) -> str:
        return to

    def int_div(self, a: str, b: str) -> str:
        return f"({a} DIV {b})"

    def epoch_us(self, col: str) -> str:
        return f"unix_micros({col})"

    def timestamp_us(self, expr: str) -> str:
        return f"timestamp_micros({expr})"

    def arg_max(self, value: str, order: str, where: str) -> str:
        return f"max_by({value}, {order}) FILTER (WHERE {where})"

    def arg_min(self, value: str, order: str, where: str) -> str:
        return f"min_by({value}, {order}) FILTER (WHERE {where})"

    def first_ignore_nulls(self, expr: str) -> str:
        return f"FIRST_VALUE({expr}, TRUE)"

    def last_ignore_nulls(self, expr: str) -> str:
        return f"LAST_VALUE({expr}, TRUE)"

    def range_rows(self, lo: str, hi: str) -> str:
        # explode(NULL) yields no rows: the empty range
        return f"explode(CASE WHEN ({hi}) > ({lo}) THEN sequence({lo}, ({hi}) - 1) END)"

    def anti_join(self) -> str:
        return "LEFT ANTI JOIN"


DUCKDB = DuckDBDialect("duckdb")
SPARK = SparkDialect("spark")
