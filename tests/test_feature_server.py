"""One HTTP request with a customer id returns the whole churn_model_v1 vector
(features/online_http.py), equal to features.retrieval.online_features, over 127.0.0.1."""
import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request

import pandas as pd
import pytest
import uvicorn

from features import store as FS
from features.backfill import run_backfill
from features.online_http import create_app, parse_at
from features.retrieval import model_columns, online_features
from tests.eventlog import random_history, same_value, ts, write_log

UNTIL = ts("2025-03-10T00:00:00Z")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsrv")
    history = random_history(random.Random(5), customers=8, days=40)
    run_backfill(write_log(history, root / "events"), str(root / "features"), until=UNTIL, progress=False)
    store = FS.open_store("local", root / "state")
    FS.apply(store, str(root / "features"))
    store.materialize(start_date=ts("2024-11-01T00:00:00Z"), end_date=UNTIL)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield store, f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.parametrize("at", ["2025-02-01T06:00:00Z", str(int(pd.Timestamp("2025-02-01T06:00:00Z").timestamp()))])
def test_one_request_returns_the_whole_vector_equal_to_online_features(server, at):
    store, base = server
    t = pd.Timestamp("2025-02-01T06:00:00Z")
    want = online_features(store, ["c1", "c3"], t)
    known = []
    for i, cid in enumerate(["c1", "c3"]):
        status, body = get(f"{base}/features/{cid}?at={at}")
        assert status == 200, body
        assert body["at"] == t.isoformat()
        got = body["features"]
        assert set(model_columns()) <= set(got) and list(got) == list(want.columns)
        for name in want.columns:
            assert same_value(got[name], want[name].iloc[i]) or (got[name] is None and pd.isna(want[name].iloc[i])), \
                (cid, name, got[name], want[name].iloc[i])
        known.append(sum(v is not None for v in got.values()))
    assert min(known) > 50   # real values, not vectors of nulls


def test_without_a_time_it_reads_now_in_whole_seconds(server):
    _, base = server
    status, body = get(f"{base}/features/c2")
    assert status == 200
    at = pd.Timestamp(body["at"])
    assert at.microsecond == 0 and abs((pd.Timestamp.now(tz="UTC") - at).total_seconds()) < 60


def test_bad_time_is_a_clear_422(server):
    _, base = server
    status, body = get(f"{base}/features/c1?at=yesterday")
    assert status == 422 and "epoch seconds or an ISO-8601 time" in body["detail"]
    with pytest.raises(ValueError, match="naive"):
        parse_at("2025-01-01T00:00:00")
