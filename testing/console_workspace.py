"""A small demo workspace for the console's tests and benchmark, built through `mhp demo` (the
same commands the demo runs), plus an untrusted customer whose id and event fields carry markup."""
from __future__ import annotations

import contextlib
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from core.times import isoformat_z

#: a customer id and event fields that would run script if a page did not escape them
EVIL_ID = '<script>alert("id")</script>'
EVIL_FIELD = '<script>alert("field")</script><img src=x onerror=alert(1)>'


def build(root: Path, customers: int = 150, days: int = 90, live_days: int = 3, epochs: int = 3,
          quiet: bool = True) -> datetime:
    """Runs `mhp demo` into ``root``; returns the simulation's end (the live days' last instant)."""
    from mhp.cli import main  # lazy: testing helper, loads the whole CLI only when a workspace is built

    out = io.StringIO()
    with contextlib.redirect_stdout(out) if quiet else contextlib.nullcontext():
        rc = main(["demo", "--workspace", str(root), "--customers", str(customers), "--days", str(days),
                   "--live-days", str(live_days), "--epochs", str(epochs)])
    if rc != 0:
        raise RuntimeError(f"mhp demo failed ({rc}):\n{out.getvalue()[-3000:]}")
    if quiet and "mhp console --workspace" not in out.getvalue():
        raise RuntimeError("mhp demo's summary does not end with the console command")
    sim = json.loads((root / "simulation.json").read_text())
    return datetime.fromisoformat(sim["start"]).replace(tzinfo=timezone.utc) + timedelta(days=days)


def add_untrusted(root: Path, at: datetime) -> dict:
    """An event-log file and an alert line (without ``alert_id``, as older lines are) for EVIL_ID."""
    t = at - timedelta(hours=3)
    day = t.strftime("%Y-%m-%d")
    table = pa.table({
        "event_id": ["ev-evil-1", "ev-evil-2"],
        "event_type": ["customer_signup", "support_ticket_created"],
        "timestamp": pa.array([t - timedelta(days=2), t], pa.timestamp("us", tz="UTC")),
        "schema_version": pa.array([1, 1], pa.int64()),
        "customer_id": [EVIL_ID, EVIL_ID],
        "tier": ["standard", None],
        "primary_subject": ["algebra", None],
        "issue_category": [None, EVIL_FIELD],
    })
    folder = root / "events" / f"date={day}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "untrusted.parquet")
    alert = {"type": "churn_risk_high", "severity": "high", "customer_id": EVIL_ID, "churn_probability": 0.9,
             "as_of": isoformat_z(t), "model_version": "churn_model_v1-untrusted",
             "rule": {"head": "churn_risk_30d", "op": ">", "threshold": 0.6}, "value": 0.9,
             "predictions": {"churn_risk_30d": 0.9, "ib_call_risk_14d": 0.1, "customer_health_score": 50.0},
             "top_features": [{"feature": EVIL_FIELD, "value": EVIL_FIELD, "contribution": 0.1}]}
    log = root / "alerts" / "alerts.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(alert) + "\n")
    return alert
