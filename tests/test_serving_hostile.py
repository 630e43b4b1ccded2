"""The inference server under hostile input: every malformed or out-of-range request is a JSON 4xx
naming the problem, no NaN ever leaves the server, and slow or stalled clients cannot starve /ping."""
import http.client
import json
import math
import socket
import time

import numpy as np
import pytest

from features.catalog import model_input_schema
from serving.server import InferenceServer
from testing.toy_model import train_toy_model

SCHEMA = model_input_schema()["features"]
FEATURES = [f["name"] for f in SCHEMA]
NUMERIC = [f["name"] for f in SCHEMA if f["kind"] in ("numeric", "context")][0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return train_toy_model(tmp_path_factory.mktemp("model"), n_rows=1200, epochs=4)


@pytest.fixture(scope="module")
def server(model_path):
    with InferenceServer(model_path, port=0) as srv:   # bodies up to 16 MiB
        yield srv


def good_row():
    return {f: None for f in FEATURES}


def exchange(port, raw: bytes, timeout=5.0) -> tuple[int, dict, bytes]:
    """Send raw bytes, read until the server closes: (status, JSON body, raw response)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    body = body[:length[0]] if length else body   # the first response only
    status = int(head.split(b" ")[1])
    assert b"content-type: application/json" in head.lower(), data[:300]
    return status, json.loads(body), data


def post_raw(port, body: bytes, extra_headers: bytes = b"") -> tuple[int, dict, bytes]:
    return exchange(port, b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + extra_headers + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def with_value(value_json: str) -> bytes:
    row = json.dumps(good_row())
    return row.replace(f'"{NUMERIC}": null', f'"{NUMERIC}": {value_json}').encode()


HOSTILE = [
    # (case, raw request or body, expected status, words the error must contain)
    ("nested 1,000 deep", b"[" * 1000 + b"]" * 1000, 400, "expected a JSON object"),
    ("nested 1,500 deep", b"[" * 1500 + b"]" * 1500, 400, "nested too deeply"),
    ("nested 100,000 deep", b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400, "nested too deeply"),
    ("1e39 (beyond float32)", with_value("1e39"), 400, f"'{NUMERIC}' (row 0)"),
    ("-1e39", with_value("-1e39"), 400, "float32"),
    ("1e400 (beyond float64)", with_value("1e400"), 400, "float32"),
    ("integer of 400 digits", with_value("1" + "0" * 400), 400, "float32"),
    ("integer of 5,000 digits", with_value("7" * 5000), 400, "cannot be parsed"),
    ("NaN", with_value("NaN"), 400, f"instance 0, feature '{NUMERIC}': NaN"),
    ("Infinity", with_value("Infinity"), 400, "Infinity is not accepted"),
    ("-Infinity", with_value("-Infinity"), 400, "-Infinity is not accepted"),
    ("NaN in the column form", json.dumps({"columns": FEATURES, "data": [[None] * len(FEATURES)]})
     .replace("null", "NaN", 1).encode(), 400, f"feature '{FEATURES[0]}': NaN"),
    ("column form, short row", json.dumps({"columns": FEATURES, "data": [[None]]}).encode(), 400,
     f"list of {len(FEATURES)} values"),
    ("column form, unknown column", json.dumps({"columns": FEATURES + ["shoe_size"],
                                                 "data": [[None] * (len(FEATURES) + 1)]}).encode(), 400, "shoe_size"),
    ("column form, duplicate column", json.dumps({"columns": FEATURES + FEATURES[:1],
                                                   "data": [[None] * (len(FEATURES) + 1)]}).encode(), 400,
     "more than once"),
    ("a string for a number", with_value('"12"'), 400, "expected a number"),
    ("true for a number", with_value("true"), 400, "expected a number"),
    ("a list for a number", with_value("[1, 2]"), 400, "expected a number"),
    ("not UTF-8", b'{"a": "\xff\xfe"}', 400, "not UTF-8"),
]
PROTOCOL = [
    ("request line of 20 kB", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request line"),
    ("headers of 20 kB", b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 20_000 + b"\r\n\r\n", 431,
     "headers longer"),
    ("garbage request line", b"HELLO THERE\r\n\r\n", 400, "malformed HTTP request"),
    ("non-numeric Content-Length", b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400,
     "malformed HTTP request"),
    ("two Content-Lengths", b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n"
     b"\r\n{}", 400, "malformed HTTP request"),
    ("header line without a colon", b"GET /ping HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400,
     "malformed HTTP request"),
    ("NUL in a header value", b"GET /ping HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400,
     "malformed HTTP request"),
    ("unknown method on /invocations", b"BREW /invocations HTTP/1.1\r\nHost: x\r\n\r\n", 405, "not allowed"),
    ("unknown path", b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 404, "no such path"),
    ("body of 20 MB (limit 16 MiB)", b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 20000000\r\n\r\n[", 413, "exceeds the limit"),
]


@pytest.mark.parametrize("case, body, status, needle", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_bodies_are_a_named_json_4xx(server, case, body, status, needle):
    got, payload, _ = post_raw(server.port, body)
    assert (got, payload["status"]) == (status, status), payload
    assert needle.lower() in payload["error"].lower(), payload
    assert exchange(server.port, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0] == 200


@pytest.mark.parametrize("case, raw, status, needle", PROTOCOL, ids=[c[0] for c in PROTOCOL])
def test_protocol_errors_are_json_too(server, case, raw, status, needle):
    got, payload, _ = exchange(server.port, raw)
    assert (got, payload["status"]) == (status, status), payload
    assert needle.lower() in payload["error"].lower(), payload


def _random_rows(rng, n):
    """Rows of finite values anywhere in float32's range (and nulls, wrong-but-valid categories)."""
    rows = []
    for _ in range(n):
        row = {}
        for f in SCHEMA:
            kind, u = f["kind"], rng.random()
            if u < 0.1:
                row[f["name"]] = None
            elif kind in ("numeric", "context"):
                magnitude = 10.0 ** rng.uniform(-40, 38.5)    # up to 3.2e38, denormals included
                value = float(np.float32(rng.choice([-1, 1]) * magnitude))
                row[f["name"]] = value if u > 0.2 else float(rng.integers(-10**6, 10**6))
            elif kind == "boolean":
                row[f["name"]] = bool(rng.random() < 0.5)
            elif kind == "ordinal":
                row[f["name"]] = str(rng.choice(f["categories"]))
            else:
                row[f["name"]] = str(rng.choice(list(f["categories"]) + ["never-seen"]))
        rows.append(row)
    return rows


def _strict(text: str):
    def refuse(literal):
        raise AssertionError(f"non-finite literal {literal} in a 200 response")
    return json.loads(text, parse_constant=refuse)


def test_no_nan_in_any_200_over_10000_random_finite_rows(server):
    rng = np.random.default_rng(20261129)
    bodies = []
    for batch in range(10):
        rows = _random_rows(rng, 1000)
        bodies.append(json.dumps({"columns": FEATURES, "data": [[r[f] for f in FEATURES] for r in rows]}
                                 if batch % 2 else {"instances": rows}, allow_nan=False))
    scored = 0
    for body in bodies:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read().decode()
        conn.close()
        assert resp.status == 200, text[:300]
        preds = _strict(text)["predictions"]
        assert len(preds) == 1000
        for p in preds:
            assert 0.0 <= p["churn_risk_30d"] <= 1.0 and 0.0 <= p["ib_call_risk_14d"] <= 1.0
            assert 0.0 <= p["customer_health_score"] <= 100.0 and math.isfinite(p["customer_health_score"])
        scored += len(preds)
    assert scored == 10_000


def test_the_column_form_scores_like_the_row_form(server):
    rows = _random_rows(np.random.default_rng(3), 50)
    _, by_rows, _ = post_raw(server.port, json.dumps({"instances": rows}).encode())
    _, by_cols, _ = post_raw(server.port, json.dumps({"columns": FEATURES[::-1],
                                                      "data": [[r[f] for f in FEATURES[::-1]] for r in rows]}).encode())
    assert by_rows["predictions"] == by_cols["predictions"] and len(by_rows["predictions"]) == 50


def test_stalled_clients_do_not_starve_ping_and_are_cut_off_after_the_read_timeout(model_path):
    with InferenceServer(model_path, port=0, request_timeout=3.0) as srv:
        stalled = []
        try:
            for i in range(200):   # half a request line / half the headers / half a body, then silence
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                s.sendall([b"GET /pi", b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Ty",
                           b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"][i % 3])
                stalled.append(s)
            t = time.perf_counter()
            status, payload, _ = exchange(srv.port, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                          timeout=1.0)
            assert status == 200 and payload["status"] == "ok"
            assert time.perf_counter() - t < 1.0
            # every stalled client gets a JSON 408 and a closed connection once its time is up
            for s in stalled[:6]:
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 408"), data
                assert "within 3 s" in json.loads(body)["error"]
        finally:
            for s in stalled:
                s.close()


def test_a_busy_model_is_a_503_not_a_queue_without_end(model_path):
    with InferenceServer(model_path, port=0, max_pending=1, workers=1) as srv:
        big = json.dumps({"instances": [good_row()] * 10}).encode()
        slow = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        slow.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                     + str(len(big)).encode() + b"\r\n\r\n" + big[:-1])   # holds the only slot while its body lags
        time.sleep(0.3)
        status, payload, _ = post_raw(srv.port, json.dumps(good_row()).encode())
        assert status == 503 and "server busy" in payload["error"]
        slow.sendall(big[-1:])
        assert slow.recv(12).startswith(b"HTTP/1.1 200")
        slow.close()
        assert post_raw(srv.port, json.dumps(good_row()).encode())[0] == 200
