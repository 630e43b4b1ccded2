"""The serving CLI on the embedded profile: `mhp score` (one customer, --all, --recover) against
`mhp serve`'s server, alerts in the local alert log; `mhp deploy` on moto; bad arguments named."""
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from mhp.cli import main
from serving.config import SPEC_RULES
from serving.server import InferenceServer
from testing.toy_model import train_toy_model
from tests.eventlog import local_feature_store, ts
from tests.test_serving_e2e import AS_OF, history


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    store = local_feature_store(root, history(), AS_OF)
    store.materialize(start_date=ts("2024-12-01T00:00:00Z"), end_date=AS_OF)
    model = train_toy_model(root / "model")
    return root, model


def alerts(root, spec_only=True):
    """The alert log; by default the spec's three rules only (the rank rule fires on batch runs too)."""
    p = root / "alerts" / "alerts.jsonl"
    got = [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []
    return [a for a in got if a["type"] in {r.type for r in SPEC_RULES}] if spec_only else got


def test_score_customer_all_and_recover(ws, capsys):
    root, model = ws
    with InferenceServer(model, port=0) as srv:
        base = ["--workspace", str(root), "--endpoint-url", srv.url]
        assert main(["score", "--customer", "bad", "--customer", "good", "--at", "2025-03-01T12:00:00Z", *base]) == 0
        out = capsys.readouterr().out
        assert "ALERT critical churn_risk_ib_calls" in out and '"customer_id": "good"' in out
        got = alerts(root)
        assert sorted(a["type"] for a in got) == ["churn_risk_high", "churn_risk_ib_calls", "health_score_critical"]
        assert all(a["customer_id"] == "bad" and a["top_features"] for a in got)
        assert main(["score", "--all", "--at", "2025-03-01T18:00:00Z", *base]) == 0     # within the cooldown
        assert "3 active customer(s)" in capsys.readouterr().out and len(alerts(root)) == 3
        # the rank rule (riskiest 5% of the batch: one of three) alerts the riskiest customer
        assert [(a["type"], a["customer_id"]) for a in alerts(root, spec_only=False)[3:]] == [
            ("churn_risk_top5pct", "bad")]
        port = srv.port
    # endpoint down: exit 1, kept as pending; back up: --recover scores them and alerts
    base = ["--workspace", str(root), "--endpoint-url", f"http://127.0.0.1:{port}"]
    assert main(["score", "--all", "--at", "2025-03-03T00:00:00Z", *base]) == 1
    assert "pending 3" in capsys.readouterr().err
    with InferenceServer(model, port=port):
        assert main(["score", "--recover", *base]) == 0
    assert len(alerts(root)) == 6 and {a["as_of"] for a in alerts(root)[3:]} == {"2025-03-03T00:00:00Z"}
    served = (root / "serving" / "served.jsonl").read_text().splitlines()
    assert len(served) == 2 + 3 + 3   # every served vector logged once


def test_bad_arguments_are_named(ws, capsys, tmp_path):
    root, _ = ws
    assert main(["score", "--all", "--workspace", str(root)]) == 2
    assert "--at: required" in capsys.readouterr().err
    assert main(["score", "--customer", "x", "--at", "2025-03-01", "--workspace", str(root)]) == 2
    assert "timezone offset" in capsys.readouterr().err
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"rules": [{"type": "x", "severity": "high", "head": "nope", "op": ">", "threshold": 1}]}))
    assert main(["score", "--customer", "x", "--at", "2025-03-01T00:00:00Z", "--config", str(bad),
                 "--workspace", str(root)]) == 2
    assert "rules[0].head" in capsys.readouterr().err
    assert main(["deploy", "--model", "m.tar.gz", "--endpoint", "e", "--steps", "0.5,0.7"]) == 2
    assert "--steps" in capsys.readouterr().err


def test_mhp_serve_process(ws, tmp_path):
    _, model = ws
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mhp.cli", "serve", "--model", str(model), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as r:
                    assert json.loads(r.read())["status"] == "ok"
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "timeout"
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_mhp_deploy_on_moto(moto_endpoint, ws, capsys):
    _, model = ws
    assert main(["deploy", "--model", str(model), "--endpoint", "cli-ep", "--bucket", "mhp-cli-models"]) == 0
    out = capsys.readouterr().out
    assert "CreateEndpoint cli-ep" in out and "autoscaling" in out
