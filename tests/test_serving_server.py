"""The inference server: SageMaker container contract, predictions equal to the artifact's
own handler, a named 4xx for every kind of bad input, and still serving afterwards."""
import http.client
import json
import socket

import pytest

from features.catalog import model_input_schema
from serving.endpoint import EndpointRejected, EndpointUnavailable, HttpEndpoint
from serving.server import InferenceServer
from testing.toy_model import train_toy_model
from training.artifact import load_artifact

FEATURES = [f["name"] for f in model_input_schema()["features"]]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return train_toy_model(tmp_path_factory.mktemp("model"), n_rows=1200, epochs=4)


@pytest.fixture(scope="module")
def server(model_path):
    with InferenceServer(model_path, port=0, max_body_bytes=256 * 1024) as srv:
        yield srv


def rows(n):
    out = []
    for i in range(n):
        r = {f: None for f in FEATURES}
        r.update(session_count_7d=float(i), ib_call_count_14d=float(i % 5), payment_success_rate_30d=0.5 + i / (4 * n),
                 subscription_tier=["budget", "standard", "premium"][i % 3], acquisition_channel="paid",
                 first_session_was_success=bool(i % 2))
        out.append(r)
    return out


def call(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data else None)
    finally:
        conn.close()


def post(server, body, content_type="application/json", **headers):
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    h = {"Content-Type": content_type} if content_type else {}
    h.update(headers)
    return call(server, "POST", "/invocations", body, h)


def same(a, b):
    return len(a) == len(b) and all(
        x["model_version"] == y["model_version"]
        and all(x[k] == pytest.approx(y[k], rel=1e-5, abs=1e-6) for k in y if k != "model_version")
        for x, y in zip(a, b))


def test_ping(server):
    status, body = call(server, "GET", "/ping")
    assert status == 200 and body["status"] == "ok" and body["model_version"] == server.model_version


def test_single_and_batch_match_the_artifact(server, model_path):
    art = load_artifact(model_path)
    batch = rows(25)
    expected = art.predict_records(batch)
    status, body = post(server, {"instances": batch})
    assert status == 200 and body["predictions"] == expected
    # other batch sizes: float32 kernels may differ in the last bits
    status, body = post(server, batch[3])                     # one bare object
    assert status == 200 and same(body["predictions"], [expected[3]])
    status, body = post(server, batch[:2])                    # a bare list
    assert status == 200 and same(body["predictions"], expected[:2])
    assert HttpEndpoint(server.url).invoke(batch) == expected  # the scoring path's client
    assert set(expected[0]) == {"churn_risk_30d", "ib_call_risk_14d", "customer_health_score", "model_version"}


@pytest.mark.parametrize("case, status, needle", [
    ("missing", 400, "ib_call_count_14d"),
    ("unknown", 400, "favourite_colour"),
    ("wrong_type", 400, "session_count_7d"),
    ("bad_category", 400, "subscription_tier"),
    ("empty", 400, "empty"),
    ("not_json", 400, "not valid JSON"),
    ("no_instances", 400, "no instances"),
    ("scalar_row", 400, "instance 0"),
    ("extra_top_level", 400, "unexpected top-level"),
    ("content_type", 415, "text/csv"),
    ("no_content_type", 415, "content type"),
    ("accept", 406, "accept"),
    ("oversized", 413, "exceeds the limit"),
    ("too_many_rows", 413, "limit"),
])
def test_bad_input_is_a_named_4xx_and_the_server_keeps_serving(server, case, status, needle):
    good = rows(1)[0]
    if case == "missing":
        r = dict(good)
        del r["ib_call_count_14d"]
        got = post(server, {"instances": [r]})
    elif case == "unknown":
        got = post(server, {"instances": [{**good, "favourite_colour": "red"}]})
    elif case == "wrong_type":
        got = post(server, {"instances": [{**good, "session_count_7d": "lots"}]})
    elif case == "bad_category":
        got = post(server, {"instances": [{**good, "subscription_tier": "platinum"}]})
    elif case == "empty":
        got = post(server, b"")
    elif case == "not_json":
        got = post(server, b"{not json")
    elif case == "no_instances":
        got = post(server, {"instances": []})
    elif case == "scalar_row":
        got = post(server, {"instances": [3]})
    elif case == "extra_top_level":
        got = post(server, {"instances": [good], "other": 1})
    elif case == "content_type":
        got = post(server, b"a,b\n1,2", content_type="text/csv")
    elif case == "no_content_type":
        got = post(server, json.dumps(good), content_type=None)
    elif case == "accept":
        got = post(server, good, Accept="text/csv")
    elif case == "oversized":
        got = post(server, b"[" + b" " * (300 * 1024) + b"]")
    elif case == "too_many_rows":
        got = post(server, b"[" + b",".join([b"{}"] * 10001) + b"]")
    got_status, body = got
    assert got_status == status, body
    assert needle.lower() in body["error"].lower(), body
    # still serving
    assert post(server, good)[0] == 200


def test_protocol_errors(server):
    assert call(server, "GET", "/nowhere")[0] == 404
    assert call(server, "GET", "/invocations")[0] == 405
    assert call(server, "DELETE", "/invocations")[0] == 405
    # no Content-Length (chunked)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.putrequest("POST", "/invocations")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"2\r\n{}\r\n0\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 411 and "Content-Length" in json.loads(resp.read())["error"]
    conn.close()
    # a client that announces more than it sends and hangs up: the server survives
    s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    s.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
    s.close()
    assert call(server, "GET", "/ping")[0] == 200


def test_client_errors(server):
    ep = HttpEndpoint(server.url)
    with pytest.raises(EndpointRejected, match="favourite_colour") as info:
        ep.invoke([{**rows(1)[0], "favourite_colour": 1}])
    assert info.value.status == 400
    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(EndpointUnavailable, match="unreachable"):
        HttpEndpoint(f"http://127.0.0.1:{port}", connect_timeout=0.5).invoke(rows(1))
