"""Feast CLI habits in a temporary copy of feature_repo/, no environment variables: feast apply,
materialize-incremental (row counts), materialize START END, feature-views list, feast serve and
feast ui (HTTP 200), and the test_workflow.py walk-through. Slow (each CLI call imports Feast)."""
import json
import os
import runpy
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1] / "feature_repo"
FEAST = str(Path(sys.executable).with_name("feast"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("MHP_")}
ENV["PYTHONPATH"] = str(REPO.parent)


def feast(repo, *args):
    done = subprocess.run([FEAST, *args], cwd=repo, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode == 0, (args, done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout + done.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_get(repo, args, port, path, body=None, wait=120):
    proc = subprocess.Popen([FEAST, *args], cwd=repo, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method="POST" if body else "GET",
                                             data=json.dumps(body).encode() if body else None,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=30) as r:
                    return r.status, r.read()
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, f"feast {args[0]} did not answer in {wait}s"
                time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(20)


def online_rows(repo, view):
    with sqlite3.connect(repo / "data" / "online.db") as con:
        return con.execute(f"SELECT COUNT(DISTINCT entity_key) FROM marketplace_health_{view}").fetchone()[0]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("cli") / "feature_repo"
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    until = runpy.run_path(str(repo / "test_workflow.py"))["ensure_feature_tables"](customers=120, days=14)
    return repo, until


def test_feast_cli_habits(repo):
    repo, until = repo
    out = feast(repo, "apply")
    assert "customer_features" in out and "does not exist" not in out and "missing" not in out.lower(), out
    out = feast(repo, "materialize-incremental", until.isoformat())
    tables = {v: pd.read_parquet(repo / "data" / "features" / f"{v}.parquet") for v in
              ("customer_features", "tutor_features", "subject_features", "marketplace_features")}
    # customer view (ttl 3650 days): every customer; daily views (ttl 1 day): the last day's entities
    assert online_rows(repo, "customer_features") == tables["customer_features"]["customer_id"].nunique() > 50
    now = pd.Timestamp.now(tz="UTC")
    for view, key in (("tutor_features", "tutor_id"), ("subject_features", "subject")):
        t = tables[view]
        recent = t[pd.to_datetime(t["event_timestamp"], utc=True) >= now - pd.Timedelta(days=1)][key].nunique()
        assert online_rows(repo, view) == recent > 0, view
    day = (until - pd.Timedelta(days=3)).isoformat()
    feast(repo, "materialize", day, until.isoformat(), "--views", "tutor_features")
    assert online_rows(repo, "tutor_features") == tables["tutor_features"]["tutor_id"].nunique()
    listed = feast(repo, "feature-views", "list")
    assert all(v in listed for v in tables)

    port = free_port()
    status, body = serve_and_get(repo, ["serve", "-h", "127.0.0.1", "-p", str(port)], port, "/get-online-features",
                                 {"feature_service": "churn_model_v1",
                                  "entities": {"customer_id": ["nobody"], "tutor_id": ["none"], "subject": ["none"],
                                               "marketplace_id": ["global"],
                                               "request_time_us": [int(until.timestamp() * 1e6)]}})
    assert status == 200 and "session_count_30d" in json.loads(body)["metadata"]["feature_names"]
    port = free_port()
    status, body = serve_and_get(repo, ["ui", "-h", "127.0.0.1", "-p", str(port)], port, "/")
    assert status == 200 and b"<html" in body.lower()


def test_the_workflow_walk_through_runs(repo):
    repo, until = repo
    done = subprocess.run([sys.executable, "test_workflow.py"], cwd=repo, capture_output=True, text=True,
                          timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--- online features" in done.stdout and "--- historical features" in done.stdout
