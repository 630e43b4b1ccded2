"""What a data-quality gate found: one outcome per expectation, the run's result, the error it raises.

Shared by both gate engines (``validation.gx_engine``, ``validation.duckdb_engine``) and the report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

SAMPLE_ROWS = 5


class DataQualityError(Exception):
    """A gate failed; ``result`` holds every outcome, the message lists the failures."""

    def __init__(self, result: "GateResult"):
        self.result = result
        super().__init__(result.summary())


@dataclass
class ExpectationOutcome:
    expectation_type: str
    column: str | None           # "a, b" for column-pair / compound expectations
    condition: str | None        # the row condition, readable ("event_type == 'login'")
    success: bool
    observed: str                # one-line summary of what was seen
    unexpected_count: int | None = None
    element_count: int | None = None
    sample_values: list = field(default_factory=list)
    sample_rows: list[dict] = field(default_factory=list)
    why: str = ""
    kwargs: dict = field(default_factory=dict)
    error: str | None = None

    def describe(self) -> str:
        where = f" where {self.condition}" if self.condition else ""
        col = f" column={self.column}" if self.column else ""
        return f"{self.expectation_type}{col}{where}: {self.observed}" + (f"  ({self.why})" if self.why else "")


@dataclass
class GateResult:
    suite_name: str
    success: bool
    engine: str
    row_count: int
    outcomes: list[ExpectationOutcome]
    seconds: float
    report_path: str | None = None
    data_docs_path: str | None = None   # GX Data Docs index (validation.data_docs), when written

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def summary(self, max_failures: int = 25) -> str:
        fails = self.failures
        if not fails:
            return (f"data-quality gate {self.suite_name!r} passed: {len(self.outcomes)} expectations "
                    f"on {self.row_count:,} rows ({self.engine}, {self.seconds:.2f}s)")
        lines = [f"data-quality gate {self.suite_name!r} failed: {len(fails)} of {len(self.outcomes)} "
                 f"expectations failed on {self.row_count:,} rows ({self.engine}, {self.seconds:.2f}s)"]
        for o in fails[:max_failures]:
            lines.append(f"  - {o.describe()}")
            for r in o.sample_rows[:3]:
                lines.append("      offending row: " + ", ".join(f"{k}={_short(v)}" for k, v in r.items()))
        if len(fails) > max_failures:
            lines.append(f"  ... and {len(fails) - max_failures} more")
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        if self.data_docs_path:
            lines.append(f"data docs: {self.data_docs_path}")
        return "\n".join(lines)



# --------------------------------------------------------------------------- shared helpers

def _short(v: Any, n: int = 60) -> str:
    s = repr(v.isoformat() if isinstance(v, (datetime, pd.Timestamp)) else v)
    return s if len(s) <= n else s[: n - 3] + "..."


def _plain(v: Any) -> Any:
    """JSON/HTML-friendly scalar."""
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, datetime, date)):
        return v.isoformat()
    return v


def _condition_text(cond: Any) -> str | None:
    if cond is None:
        return None
    d = cond if isinstance(cond, dict) else cond.dict() if hasattr(cond, "dict") else {"type": "raw", "v": str(cond)}
    t = d.get("type")
    if t == "comparison":
        op = {"IN": "in", "NOT_IN": "not in"}.get(str(d["operator"]), str(d["operator"]))
        return f"{d['column']['name']} {op} {d['parameter']!r}"
    if t in ("and", "or"):
        return f" {t} ".join(f"({_condition_text(c)})" for c in d["conditions"])
    if t == "pass_through":
        return d.get("pass_through_filter")
    return str(cond)


def _config_parts(exp) -> tuple[str, dict, dict]:
    cfg = exp.configuration.to_json_dict()
    return cfg["type"], cfg["kwargs"], cfg.get("meta") or {}


def _column_of(kwargs: dict) -> str | None:
    if "column" in kwargs:
        return kwargs["column"]
    if "column_A" in kwargs:
        return f"{kwargs['column_A']}, {kwargs['column_B']}"
    if "column_list" in kwargs:
        return ", ".join(kwargs["column_list"])
    return None


def _unexpected_summary(unexpected: int, total: int, values: list) -> str:
    pct = 100.0 * unexpected / total if total else 0.0
    s = f"{unexpected:,} unexpected of {total:,} ({pct:.3g}%)"
    if values:
        s += "; e.g. " + ", ".join(_short(_plain(v), 30) for v in values[:5])
    return s


