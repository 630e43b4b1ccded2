"""Data-quality gates around the backfill: the event log going in, the snapshot tables coming out.

A failure raises validation.gate.DataQualityError naming the failing expectations and sample rows;
an HTML report per table is written either way.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from core import storage
from validation.gate import run_gate
from validation.specs import ColumnSpec
from validation.suites import event_log_suite, feature_suite

from . import catalog as C


def check_event_log(events_uri: str, until: datetime, report_dir: Path):

    df = storage.read_parquet(events_uri).to_pandas()
    df = df.drop(columns=[c for c in ("date",) if c in df.columns])
    return run_gate("event_log", df, event_log_suite(None, until), report_path=report_dir / "event_log.html")


def check_snapshots(outputs: dict[str, str], report_dir: Path) -> list:

    results = []
    for view, uri in outputs.items():
        specs = [ColumnSpec.from_dict(d) for d in C.column_specs(view)]
        df = storage.read_parquet(uri).to_pandas()
        suite = feature_suite(specs, entity_key=C.ENTITY_KEYS[view], name=view)
        results.append(run_gate(view, df, suite, report_path=report_dir / f"{view}.html"))
    return results
