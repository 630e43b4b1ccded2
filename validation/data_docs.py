"""Great Expectations as its users know it: a file-backed GX project whose stored expectation suites
run through checkpoints, and whose report is GX's own Data Docs site.

* ``run_checkpoint``: the ``gx`` engine's path. The suite is stored (``gx/expectations/``), with a
  pandas data source, a validation definition and a checkpoint whose ``UpdateDataDocsAction``
  rebuilds the site; the checkpoint runs on the DataFrame.
* ``record_outcomes``: the ``duckdb`` engine's path (tables too big for GX on pandas). The suite is
  stored the same way; the verdicts DuckDB computed are written into GX's validation-results store
  as a validation result (its run name and meta say ``engine: duckdb``) and the site is rebuilt, so
  both paths show up in the same Data Docs.

The site's index is ``<root>/gx/uncommitted/data_docs/local_site/index.html``.
"""
from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from validation import _gx
from validation.gx_engine import _outcome_from_gx
from validation.results import SAMPLE_ROWS, ExpectationOutcome

gx = _gx.gx
DATA_SOURCE = "frames"
SITE_INDEX = Path("gx") / "uncommitted" / "data_docs" / "local_site" / "index.html"

_CONTEXTS: dict[Path, Any] = {}


def index_path(root: str | Path) -> Path:
    return Path(root).resolve() / SITE_INDEX


@contextmanager
def _context(root: str | Path):
    """The file-backed context at ``root``, GX's current project only inside the block: GX objects
    built elsewhere (the suite builders, the ephemeral gates) keep resolving to the ephemeral one."""
    from great_expectations.data_context.data_context.context_factory import project_manager

    root = Path(root).resolve()
    ephemeral = _gx.get_context()
    if root not in _CONTEXTS:
        root.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctx = gx.get_context(mode="file", project_root_dir=str(root))
        ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
        _CONTEXTS[root] = ctx
    project_manager.set_project(_CONTEXTS[root])
    try:
        yield _CONTEXTS[root]
    finally:
        project_manager.set_project(ephemeral)


def _store_suite(ctx, suite):
    """Store a copy (the caller's suite object stays unbound and reusable)."""
    stored = copy.deepcopy(suite)
    stored.id = None
    for e in stored.expectations:
        e.id = None
    return ctx.suites.add_or_update(stored)


def run_checkpoint(root: str | Path, suite, df: pd.DataFrame, keys: list[str]) -> tuple[list[ExpectationOutcome], Path]:
    """Run ``suite`` on ``df`` through a stored GX checkpoint that updates Data Docs."""
    with _context(root) as ctx:
        return _run_checkpoint(ctx, suite, df, keys), index_path(root)


def _run_checkpoint(ctx, suite, df: pd.DataFrame, keys: list[str]) -> list[ExpectationOutcome]:
    from great_expectations.checkpoint import UpdateDataDocsAction

    stored = _store_suite(ctx, suite)
    try:
        source = ctx.data_sources.get(DATA_SOURCE)
    except Exception:   # GX raises its own not-found types, which differ between stores
        source = ctx.data_sources.add_pandas(DATA_SOURCE)
    try:
        asset = source.get_asset(suite.name)
    except LookupError:
        asset = source.add_dataframe_asset(suite.name)
    try:
        batch = asset.get_batch_definition("whole")
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe("whole")
    definition = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=suite.name, data=batch, suite=stored))
    fmt: dict[str, Any] = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_ROWS}
    if keys:
        fmt["unexpected_index_column_names"] = keys
    checkpoint = ctx.checkpoints.add_or_update(gx.Checkpoint(
        name=suite.name, validation_definitions=[definition], result_format=fmt,
        actions=[UpdateDataDocsAction(name="update_data_docs")]))
    run = checkpoint.run(batch_parameters={"dataframe": df})
    (result,) = run.run_results.values()
    return [_outcome_from_gx(r) for r in result.results]


def record_outcomes(root: str | Path, suite, outcomes: list[ExpectationOutcome], engine: str,
                    row_count: int) -> Path:
    """Store verdicts computed outside GX as a GX validation result of the stored suite; rebuild Data Docs."""
    with _context(root) as ctx:
        _record(ctx, suite, outcomes, engine, row_count)
    return index_path(root)


def _record(ctx, suite, outcomes: list[ExpectationOutcome], engine: str, row_count: int) -> None:
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    _store_suite(ctx, suite)
    results = []
    for o in outcomes:
        meta = {"why": o.why, "engine": engine}
        cfg = ExpectationConfiguration(type=o.expectation_type, kwargs=dict(o.kwargs), meta=meta)
        res: dict[str, Any] = {}
        if o.unexpected_count is None:
            res["observed_value"] = o.observed
        else:
            res.update(unexpected_count=o.unexpected_count, element_count=o.element_count,
                       unexpected_percent=100.0 * o.unexpected_count / o.element_count if o.element_count else 0.0,
                       partial_unexpected_list=list(o.sample_values))
        exc = {"raised_exception": bool(o.error), "exception_message": o.error, "exception_traceback": None}
        results.append(ExpectationValidationResult(success=o.success, expectation_config=cfg, result=res,
                                                   exception_info=exc))
    run_id = RunIdentifier(run_name=f"{suite.name}-{engine}")
    passed = sum(o.success for o in outcomes)
    validation = ExpectationSuiteValidationResult(
        success=passed == len(outcomes), results=results, suite_name=suite.name,
        statistics={"evaluated_expectations": len(outcomes), "successful_expectations": passed,
                    "unsuccessful_expectations": len(outcomes) - passed,
                    "success_percent": 100.0 * passed / len(outcomes) if outcomes else 100.0},
        meta={"engine": engine, "row_count": row_count, "run_id": run_id,
              "active_batch_definition": {"datasource_name": engine, "data_asset_name": suite.name}})
    key = ValidationResultIdentifier(expectation_suite_identifier=ExpectationSuiteIdentifier(name=suite.name),
                                     run_id=run_id, batch_identifier=f"{engine}-{suite.name}")
    ctx.validation_results_store.set(key, validation)
    ctx.build_data_docs()
