"""Data-quality gates: run a GX suite over a DataFrame, stop the pipeline on failure.

Two engines evaluate the same ``gx.ExpectationSuite`` and report through the
same ``GateResult``:

* ``gx``     - Great Expectations itself on pandas (moderate sizes).
* ``duckdb`` - each expectation of the suite translated to SQL aggregates, one
  scan per distinct row condition. GX on pandas spends seconds per expectation
  on millions of rows (a 230-expectation event suite would take many minutes),
  DuckDB runs the whole suite in seconds. Only the expectation types the suite
  builders emit are translated; anything else falls back to GX.

With ``data_docs_dir``, the suite is stored in the GX project there and the run lands in GX's Data
Docs (validation/data_docs.py): the ``gx`` engine runs through a stored checkpoint, the ``duckdb``
engine's verdicts are recorded as a GX validation result marked ``engine: duckdb``.

``engine="auto"`` picks GX up to ``GX_MAX_ROWS`` rows, DuckDB above (GX costs ~4 s for
the 230-expectation event suite even on 5,000 rows; see bench/bench_validation.py).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from validation.duckdb_engine import _run_duckdb
from validation.gx_engine import _run_gx
from validation.report import write_report
from validation.results import DataQualityError, ExpectationOutcome, GateResult

__all__ = ["GX_MAX_ROWS", "DataQualityError", "ExpectationOutcome", "GateResult", "run_gate"]

GX_MAX_ROWS = 20_000


def run_gate(suite_name: str, df: pd.DataFrame, suite, *, key_columns: Sequence[str] | None = None,
             report_path: str | Path | None = None, engine: str = "auto",
             raise_on_failure: bool = True, data_docs_dir: str | Path | None = None) -> GateResult:
    """Validate ``df`` against ``suite``; write the HTML report and/or GX Data Docs; raise
    DataQualityError on failure."""
    if engine not in ("auto", "gx", "duckdb"):
        raise ValueError(f"engine: expected 'auto', 'gx' or 'duckdb', got {engine!r}")
    if engine == "auto":
        engine = "gx" if len(df) <= GX_MAX_ROWS else "duckdb"
    keys = [k for k in (key_columns or suite.meta.get("key_columns") or []) if k in df.columns]
    t0 = time.perf_counter()
    docs = None
    if data_docs_dir is not None:
        from validation import data_docs  # lazy: the file-backed GX project is needed only for Data Docs

        if engine == "gx":
            outcomes, docs = data_docs.run_checkpoint(data_docs_dir, suite, df, keys)
        else:
            outcomes = _run_duckdb(df, suite, keys)
            docs = data_docs.record_outcomes(data_docs_dir, suite, outcomes, engine, len(df))
    else:
        outcomes = _run_gx(df, suite, keys) if engine == "gx" else _run_duckdb(df, suite, keys)
    result = GateResult(suite_name=suite_name, success=all(o.success for o in outcomes), engine=engine,
                        row_count=len(df), outcomes=outcomes, seconds=time.perf_counter() - t0,
                        data_docs_path=str(docs) if docs else None)
    if report_path is not None:
        result.report_path = str(write_report(result, report_path))
    if raise_on_failure and not result.success:
        raise DataQualityError(result)
    return result

