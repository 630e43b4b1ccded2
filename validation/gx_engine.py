"""Gate engine ``gx``: Great Expectations itself, on pandas (moderate sizes)."""
from __future__ import annotations

import time
from typing import Any

import pandas as pd

from validation import _gx
from validation.results import (
    SAMPLE_ROWS,
    ExpectationOutcome,
    _column_of,
    _condition_text,
    _plain,
    _short,
    _unexpected_summary,
)


def _run_gx(df: pd.DataFrame, suite, keys: list[str]) -> list[ExpectationOutcome]:
    ctx = _gx.get_context()
    name = f"gate_{id(df)}_{time.perf_counter_ns()}"
    source = ctx.data_sources.add_pandas(name)
    try:
        batch = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole").get_batch(
            batch_parameters={"dataframe": df})
        fmt: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_ROWS}
        if keys:
            fmt["unexpected_index_column_names"] = keys
        validation = batch.validate(suite, result_format=fmt)
    finally:
        ctx.data_sources.delete(name)
    return [_outcome_from_gx(r) for r in validation.results]


def _outcome_from_gx(r) -> ExpectationOutcome:
    cfg = r.expectation_config.to_json_dict()
    etype, kwargs, meta = cfg["type"], cfg["kwargs"], cfg.get("meta") or {}
    res = r.result or {}
    exc = (r.exception_info or {}) if hasattr(r, "exception_info") else {}
    error = exc.get("exception_message") if exc.get("raised_exception") else None
    if error:
        observed = f"error: {error}"
    elif "observed_value" in res:
        observed = f"observed {_short(_plain(res['observed_value']))}"
        if etype == "expect_table_row_count_to_be_between":
            observed = f"observed {res['observed_value']:,} rows"
    elif "unexpected_count" in res:
        observed = _unexpected_summary(res["unexpected_count"] or 0, res.get("element_count") or 0,
                                       res.get("partial_unexpected_list") or [])
    else:
        observed = "passed" if r.success else "failed"
    rows = [{k: _plain(v) for k, v in row.items()} for row in (res.get("partial_unexpected_index_list") or [])
            if isinstance(row, dict)]
    return ExpectationOutcome(
        expectation_type=etype, column=_column_of(kwargs), condition=_condition_text(kwargs.get("row_condition")),
        success=bool(r.success), observed=observed, unexpected_count=res.get("unexpected_count"),
        element_count=res.get("element_count"), sample_values=[_plain(v) for v in res.get("partial_unexpected_list") or []],
        sample_rows=rows[:SAMPLE_ROWS], why=meta.get("why", ""), kwargs=kwargs, error=error)


