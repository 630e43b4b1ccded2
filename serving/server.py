"""The inference server: the SageMaker container contract over a ``model.tar.gz``.

    GET  /ping         200 once the model is loaded (SageMaker's health check)
    POST /invocations  JSON rows in, {"predictions": [...]} out (one or many rows)

The artifact is served through its own ``code/inference.py`` (``model_fn`` / ``input_fn`` /
``predict_fn`` / ``output_fn``) exactly as a SageMaker PyTorch endpoint runs it, via
``training.artifact.load_artifact``. Listens on 8080 by default, as SageMaker expects.

Bad input never takes the server down: every client error is a 4xx with a JSON body
``{"error": "<what is wrong>", "status": <code>}``:

* 400 empty / invalid JSON, missing or unknown features (named), wrong types (feature,
  row and value named) -- raised by the artifact's own input checks;
* 404 unknown path, 405 wrong method;
* 411 no Content-Length (chunked bodies are refused: the size must be known up front);
* 413 body larger than ``max_body_bytes`` (refused before reading it) or more rows than
  the artifact allows;
* 415 wrong Content-Type, 406 unsupported Accept.

An unexpected exception in the model code is a 500 with the exception named; the
server keeps serving. Threads: one per connection (``ThreadingHTTPServer``, HTTP/1.1
keep-alive, Nagle off); torch runs one intra-op thread per request (``MHP_TORCH_THREADS``).
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from training.artifact import load_artifact

log = logging.getLogger("mhp.serving.server")

DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: "_Server"

    def log_message(self, fmt: str, *args: Any) -> None:  # stdlib logs every request to stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, *, close: bool = False) -> None:
        if close:
            self.close_connection = True
        self._send(status, _error_body(status, message))

    def _path(self) -> str:
        return self.path.split("?", 1)[0]

    # --- GET ------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        path = self._path()
        if path == "/ping":
            body = json.dumps({"status": "ok", "model_version": self.server.artifact.model_version}).encode()
            self._send(200, body)
        elif path == "/invocations":
            self._error(405, "use POST for /invocations", close=self._has_body())
        else:
            self._error(404, f"no such path {path!r}; the endpoint serves GET /ping and POST /invocations",
                        close=self._has_body())

    def _has_body(self) -> bool:
        return bool(self.headers.get("Content-Length") not in (None, "0") or self.headers.get("Transfer-Encoding"))

    # --- POST -----------------------------------------------------------------------------
    def do_POST(self) -> None:  # noqa: N802
        path = self._path()
        if path != "/invocations":
            self._error(404 if path != "/ping" else 405,
                        f"no such path {path!r} for POST; send rows to POST /invocations", close=True)
            return
        if self.headers.get("Transfer-Encoding"):
            self._error(411, "chunked request bodies are not accepted; send Content-Length", close=True)
            return
        raw_len = self.headers.get("Content-Length")
        if raw_len is None:
            self._error(411, "missing Content-Length header", close=True)
            return
        try:
            length = int(raw_len)
            if length < 0:
                raise ValueError
        except ValueError:
            self._error(400, f"bad Content-Length {raw_len!r}; expected a non-negative integer", close=True)
            return
        limit = self.server.max_body_bytes
        if length > limit:
            self._error(413, f"request body of {length} bytes exceeds the limit of {limit} bytes", close=True)
            return
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            self._error(400, f"request body ended after {len(body)} of {length} bytes", close=True)
            return
        content_type = self.headers.get("Content-Type")
        accept = self.headers.get("Accept") or "application/json"
        if not body.strip():
            # the artifact's input_fn checks the content type first; an empty body is the bigger problem
            ctype_ok = (content_type or "").split(";")[0].strip().lower() == "application/json"
            self._error(400 if ctype_ok else 415,
                        "empty request body; expected JSON rows" if ctype_ok else
                        f"unsupported content type {content_type!r}; send application/json")
            return
        try:
            out = self.server.artifact.invoke(body, content_type or "", accept)
        except ValueError as exc:  # the artifact's client errors carry status_code
            status = int(getattr(exc, "status_code", 400))
            self._error(status if 400 <= status < 500 else 400, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a model bug must not kill the server
            log.exception("invocation failed")
            self._error(500, f"model error: {type(exc).__name__}: {exc}")
            return
        self._send(200, out.encode() if isinstance(out, str) else out,
                   extra={"X-Model-Version": self.server.artifact.model_version})

    def do_PUT(self) -> None:  # noqa: N802
        self._error(405, "method not allowed; the endpoint serves GET /ping and POST /invocations", close=True)

    do_DELETE = do_PATCH = do_PUT


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr, artifact, max_body_bytes: int):
        self.artifact = artifact
        self.max_body_bytes = max_body_bytes
        super().__init__(addr, _Handler)

    def handle_error(self, request, client_address) -> None:
        # a client that hangs up mid-request (reset, broken pipe): log, never print a traceback
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class InferenceServer:
    """Serve a loaded artifact (``training.artifact.LoadedArtifact``) or a model path.

    ``port=0`` picks a free port (see :attr:`url`). Use :meth:`start` / :meth:`stop` for a
    background thread (tests, benchmarks) or :meth:`serve_forever` (the CLI).
    """

    def __init__(self, model, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):

            model = load_artifact(model)
        self.artifact = model
        self._httpd = _Server((host, port), model, max_body_bytes)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    @property
    def model_version(self) -> str:
        return self.artifact.model_version

    def start(self) -> "InferenceServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"mhp-inference-{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "InferenceServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
