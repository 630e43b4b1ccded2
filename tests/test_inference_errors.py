"""Bad input is a 4xx end to end, and only 4xx is final.

* The artifact's handler (code/inference.py) run through the SageMaker inference toolkit's own
  code path, ``sagemaker_inference.transformer.Transformer.transform`` (the PyTorch inference
  container's handler service wraps it), with a model-server context like the toolkit's unit
  tests use: 400 / 415 / 406 for bad input, 200 for good; a plain exception is the toolkit's 500
  (why inference.py raises the toolkit's error type).
* Without the toolkit (our own server), the same errors are ValueErrors with ``status_code``,
  which serving/server.py answers with that status.
* The clients: ``HttpEndpoint`` and ``SageMakerEndpoint`` (real botocore against a local
  SageMaker-runtime stand-in that wraps the real inference server's answer in ``ModelError``
  with ``OriginalStatusCode``, as InvokeEndpoint does) reject 4xx at once and retry 5xx, 429 and
  connection errors.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from serving.endpoint import (
    EndpointRejected,
    EndpointUnavailable,
    HttpEndpoint,
    RetryPolicy,
    SageMakerEndpoint,
    invoke_with_retry,
)
from serving.server import InferenceServer
from testing.toy_model import train_toy_model
from training.artifact import load_artifact

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("toolkit")
    tarball = train_toy_model(root / "train", n_rows=600, epochs=1)
    art = load_artifact(tarball, root / "model")
    row = {name: None for name in art.model.feature_names}   # nulls are valid: missing is not zero
    assert len(art.predict_records([row])) == 1
    return root / "model", row


# run in a fresh interpreter, as the container does: the model server puts <model_dir>/code on
# the path and the toolkit imports SAGEMAKER_PROGRAM from there
TOOLKIT_SCRIPT = r"""
import json, os, sys
from sagemaker_inference.transformer import Transformer

class RequestProcessor:
    def __init__(self, headers):
        self.headers = headers
    def get_request_properties(self):
        return self.headers

class Context:  # what the model server hands the handler service (system_properties, request_processor)
    def __init__(self, model_dir, headers):
        self.system_properties = {"model_dir": model_dir}
        self.request_processor = [RequestProcessor(headers)]
        self.status = None
        self.content_type = None
    def set_response_status(self, code, phrase):
        self.status = (code, phrase)
    def set_response_content_type(self, idx, content_type):
        self.content_type = content_type

model_dir, cases = sys.argv[1], json.loads(sys.stdin.read())
out = []
for program, body, headers in cases:
    os.environ["SAGEMAKER_PROGRAM"] = program
    transformer = Transformer()
    ctx = Context(model_dir, headers)
    [response] = transformer.transform([{"body": body.encode()}], ctx)
    code = ctx.status[0] if ctx.status else 200
    out.append({"status": code, "phrase": ctx.status[1] if ctx.status else None,
                "body": response if isinstance(response, str) else response.decode(),
                "module": type(sys.modules.get(program[:-3])).__name__})
print(json.dumps(out))
"""


def test_the_toolkit_answers_bad_input_with_its_4xx(model_dir, tmp_path):
    model, row = model_dir
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "plain_handler.py").write_text(
        "def model_fn(model_dir):\n    return None\n"
        "def input_fn(body, content_type):\n    raise ValueError('bad input, raised as a plain ValueError')\n")
    good = json.dumps({"instances": [row, row]})
    missing = json.dumps({k: v for k, v in list(row.items())[1:]})
    json_ct = {"Content-Type": "application/json", "Accept": "application/json"}
    cases = [
        ("inference.py", good, json_ct),
        ("inference.py", "{not json", json_ct),
        ("inference.py", missing, json_ct),
        ("inference.py", json.dumps({**row, "favourite_colour": "red"}), json_ct),
        ("inference.py", "a,b\n1,2", {"Content-Type": "text/csv"}),
        ("inference.py", good, {"Content-Type": "application/json", "Accept": "text/csv"}),
        ("plain_handler.py", good, json_ct),       # negative control: the toolkit's default for any exception
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(model / "code"), str(tmp_path / "code")])}
    proc = subprocess.run([sys.executable, "-c", TOOLKIT_SCRIPT, str(model)], input=json.dumps(cases),
                          capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res[0]["status"] == 200 and len(json.loads(res[0]["body"])["predictions"]) == 2
    assert [r["status"] for r in res[1:]] == [400, 400, 400, 415, 406, 500]
    assert res[1]["phrase"] == "Bad Request" and res[1]["body"].startswith("request body is not valid JSON")
    first = next(iter(row))
    assert res[2]["body"].startswith("missing required features") and first in res[2]["body"].splitlines()[0]
    assert "favourite_colour" in res[3]["body"].splitlines()[0]
    assert res[4]["phrase"] == "Unsupported Media Type" and "text/csv" in res[4]["body"]
    assert "bad input, raised as a plain ValueError" in res[6]["body"]


BLOCK_TOOLKIT = "import sys; sys.modules['sagemaker_inference'] = None  # ImportError on import\n"


def test_without_the_toolkit_the_errors_are_value_errors_our_server_maps(model_dir):
    model, row = model_dir
    script = BLOCK_TOOLKIT + r"""
import json, http.client
from training.artifact import load_artifact
from serving.server import InferenceServer
art = load_artifact(sys.argv[1])
try:
    art.invoke("{not json", "application/json")
except ValueError as exc:
    print(json.dumps({"type": [c.__name__ for c in type(exc).__mro__], "status": exc.status_code, "str": str(exc)}))
server = InferenceServer(sys.argv[1], port=0).start()
out = []
for body, ctype in (("{not json", "application/json"), ("a,b", "text/csv"), (json.dumps(json.loads(sys.argv[2])), "application/json")):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("POST", "/invocations", body=body, headers={"Content-Type": ctype})
    out.append(conn.getresponse().status)
server.stop()
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", script, str(model), json.dumps(row)], capture_output=True,
                          text=True, timeout=180, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, statuses = [json.loads(line) for line in proc.stdout.strip().splitlines()[-2:]]
    assert first["type"][:2] == ["InferenceInputError", "ValueError"] and first["status"] == 400
    assert "BaseInferenceToolkitError" not in first["type"] and first["str"].startswith("request body is not valid JSON")
    assert statuses == [400, 415, 200]


# --- the clients ---------------------------------------------------------------------------------

class _Runtime(ThreadingHTTPServer):
    """A stand-in for the SageMaker runtime on 127.0.0.1 (rest-json, as botocore speaks it):
    ``POST /endpoints/<name>/invocations``. Endpoint ``live`` forwards to the real inference server
    and answers a non-200 as InvokeEndpoint does: ``ModelError`` (HTTP 424) with the container's
    status and body in ``OriginalStatusCode`` / ``OriginalMessage``. Other names return one canned
    service error each."""

    daemon_threads = True

    def __init__(self, upstream: HttpEndpoint):
        super().__init__(("127.0.0.1", 0), _RuntimeHandler)
        self.upstream = upstream
        self.calls: dict[str, int] = {}


CANNED = {
    "container-500": (424, "ModelError", {"OriginalStatusCode": 500, "OriginalMessage": "model error: RuntimeError"}),
    "container-429": (424, "ModelError", {"OriginalStatusCode": 429, "OriginalMessage": "too many requests"}),
    "not-ready": (429, "ModelNotReadyException", {}),
    "busy": (503, "ServiceUnavailable", {}),
    "throttled": (400, "ThrottlingException", {}),
    "missing": (400, "ValidationError", {}),
}


class _RuntimeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: dict, error_type: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802
        name = self.path.split("/")[2]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.calls[name] = self.server.calls.get(name, 0) + 1
        if name == "live":
            status, data = self.server.upstream._request("POST", "/invocations", body)
            if status == 200:
                self._answer(200, json.loads(data))
            else:
                self._answer(424, {"Message": f"Received client error ({status}) from primary", "OriginalStatusCode": status,
                                   "OriginalMessage": data.decode(), "LogStreamArn": "arn:aws:logs:us-east-1:1:log-group:x"},
                             "ModelError")
            return
        status, code, extra = CANNED[name]
        self._answer(status, {"Message": f"{code} from the stand-in", **extra}, code)


@pytest.fixture(scope="module")
def runtime(model_dir):
    model, row = model_dir
    server = InferenceServer(model, port=0).start()
    stand_in = _Runtime(HttpEndpoint(server.url))
    thread = threading.Thread(target=stand_in.serve_forever, daemon=True)
    thread.start()
    yield stand_in, server, row
    stand_in.shutdown()
    server.stop()


def _sagemaker_endpoint(name: str, port: int) -> SageMakerEndpoint:
    import boto3
    from botocore.config import Config

    client = boto3.client("sagemaker-runtime", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(retries={"max_attempts": 1}))
    return SageMakerEndpoint(name, client=client)


def _attempts(call) -> tuple[int, BaseException | None]:
    n = 0

    def counted():
        nonlocal n
        n += 1
        return call()

    try:
        invoke_with_retry(counted, RetryPolicy(attempts=3, initial_delay=0.0), sleep=lambda s: None)
        return n, None
    except Exception as exc:  # noqa: BLE001
        return n, exc


def test_sagemaker_endpoint_rejects_the_containers_4xx_and_retries_the_rest(runtime):
    stand_in, _, row = runtime
    port = stand_in.server_address[1]
    live = _sagemaker_endpoint("live", port)
    assert len(live.invoke([row, row])) == 2

    n, exc = _attempts(lambda: live.invoke([{**row, "favourite_colour": "red"}]))
    assert n == 1 and isinstance(exc, EndpointRejected) and exc.status == 400
    assert "favourite_colour" in str(exc)

    for name in ("container-500", "container-429", "not-ready", "busy", "throttled"):
        n, exc = _attempts(lambda: _sagemaker_endpoint(name, port).invoke([row]))
        assert n == 3 and isinstance(exc, EndpointUnavailable), (name, exc)
    n, exc = _attempts(lambda: _sagemaker_endpoint("missing", port).invoke([row]))
    assert n == 1 and isinstance(exc, EndpointRejected)
    assert stand_in.calls["container-500"] == 3 and stand_in.calls["missing"] == 1


def test_http_endpoint_rejects_4xx_and_retries_connection_errors(runtime):
    _, server, row = runtime
    ep = HttpEndpoint(server.url)
    n, exc = _attempts(lambda: ep.invoke([{k: v for k, v in row.items() if k != next(iter(row))}]))
    assert n == 1 and isinstance(exc, EndpointRejected) and exc.status == 400
    n, exc = _attempts(lambda: ep.invoke([row]))
    assert n == 1 and exc is None
    dead = HttpEndpoint("http://127.0.0.1:9", connect_timeout=0.5)   # nothing listens on port 9 (discard)
    n, exc = _attempts(lambda: dead.invoke([row]))
    assert n == 3 and isinstance(exc, EndpointUnavailable)
