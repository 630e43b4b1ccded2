"""The inference server: the SageMaker container contract over a ``model.tar.gz``.

    GET  /ping          200 once the model is loaded (SageMaker's health check)
    POST /invocations   JSON rows in, {"predictions": [...]} out (one or many rows)
    GET  /openapi.json  the OpenAPI schema of the two

The artifact is served through its own ``code/inference.py`` (``model_fn`` / ``input_fn`` /
``predict_fn`` / ``output_fn``) exactly as a SageMaker PyTorch endpoint runs it, via
``training.artifact.load_artifact``. Listens on 8080 by default, as SageMaker expects.

FastAPI on uvicorn (h11, one asyncio event loop): a connection costs a socket, not a thread,
so slow or stalled clients cannot starve ``/ping``. The model runs in a bounded pool of
``workers`` threads (torch: ``MHP_TORCH_THREADS`` intra-op threads each, default 1); at most
``max_pending`` invocations wait or run at once, more are a 503. A request must arrive in full
within ``request_timeout`` seconds (else 408); idle keep-alive connections close after
``keep_alive_timeout`` seconds (serving/http_protocol.py).

Bad input never takes the server down: every client error is a 4xx with a JSON body
``{"error": "<what is wrong>", "status": <code>}``, protocol-level ones included:

* 400 malformed HTTP, empty / invalid / too deeply nested JSON, missing or unknown features
  (named), wrong types, NaN / Infinity, numbers beyond float32 (feature, row and value named);
* 404 unknown path, 405 wrong method, 408 request not received in time;
* 411 no Content-Length (chunked bodies are refused: the size must be known up front);
* 413 body larger than ``max_body_bytes`` (refused before reading it) or more rows than the
  artifact allows; 414 / 431 request line / headers longer than ``max_header_bytes``;
* 415 wrong Content-Type, 406 unsupported Accept; 503 more than ``max_pending`` invocations.

An unexpected exception in the model code (a non-finite prediction included) is a 500 with
the exception named; the server keeps serving.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from serving.http_protocol import DEFAULT_REQUEST_TIMEOUT, DeadlineH11Protocol
from training.artifact import load_artifact

log = logging.getLogger("mhp.serving.server")

DEFAULT_PORT = 8080
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_HEADER_BYTES = 16 * 1024
DEFAULT_KEEP_ALIVE_TIMEOUT = 5
DEFAULT_MAX_PENDING = 128
JSON_MEDIA = "application/json"


def _error(status: int, message: str, *, close: bool = False) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status,
                        headers={"Connection": "close"} if close else None)


def build_app(artifact, *, max_body_bytes: int, executor: ThreadPoolExecutor, max_pending: int) -> FastAPI:
    """The ASGI app over a loaded artifact (``training.artifact.LoadedArtifact``)."""
    app = FastAPI(title="Marketplace Health inference endpoint", version=artifact.model_version,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    pending = 0

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        if exc.status_code == 404:
            detail = f"no such path {request.url.path!r}; the endpoint serves GET /ping and POST /invocations"
        elif exc.status_code == 405:
            detail = (f"method {request.method} not allowed on {request.url.path!r}; "
                      "the endpoint serves GET /ping and POST /invocations")
        return _error(exc.status_code, str(detail), close=_has_body(request))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, f"invalid request: {exc.errors()}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        return _error(500, f"server error: {type(exc).__name__}: {exc}")

    @app.get("/ping", summary="health check: 200 once the model is loaded")
    async def ping() -> dict:
        return {"status": "ok", "model_version": artifact.model_version}

    @app.post("/invocations", summary="score rows",
              openapi_extra={"requestBody": {"required": True, "content": {JSON_MEDIA: {"schema": {
                  "description": '{"instances": [{feature: value}]}, a list of such objects, one object, '
                                 'or {"columns": [feature], "data": [[value]]}'}}}}})
    async def invocations(request: Request) -> Response:
        nonlocal pending
        headers = request.headers
        if headers.get("transfer-encoding"):
            return _error(411, "chunked request bodies are not accepted; send Content-Length", close=True)
        raw_len = headers.get("content-length")
        if raw_len is None:
            return _error(411, "missing Content-Length header", close=True)
        length = int(raw_len)  # h11 has already refused a malformed Content-Length with a 400
        if length > max_body_bytes:
            return _error(413, f"request body of {length} bytes exceeds the limit of {max_body_bytes} bytes",
                          close=True)
        if pending >= max_pending:
            return _error(503, f"server busy: {pending} invocations in progress (limit {max_pending}); retry",
                          close=True)
        pending += 1
        try:
            body = await request.body()
            content_type = headers.get("content-type")
            accept = headers.get("accept") or JSON_MEDIA
            if not body.strip():
                # the artifact's input_fn checks the content type first; an empty body is the bigger problem
                if (content_type or "").split(";")[0].strip().lower() == JSON_MEDIA:
                    return _error(400, "empty request body; expected JSON rows")
                return _error(415, f"unsupported content type {content_type!r}; send {JSON_MEDIA}")
            try:  # in the pool even for one row: measured faster than running it on the event loop
                out = await asyncio.get_running_loop().run_in_executor(
                    executor, artifact.invoke, body, content_type or "", accept)
            except ValueError as exc:  # the artifact's client errors carry status_code
                status = int(getattr(exc, "status_code", 400))
                return _error(status if 400 <= status < 500 else 400, str(exc))
            except Exception as exc:  # noqa: BLE001 - a model bug must not kill the server
                log.exception("invocation failed")
                return _error(500, f"model error: {type(exc).__name__}: {exc}")
        finally:
            pending -= 1
        return Response(out, media_type=JSON_MEDIA, headers={"X-Model-Version": artifact.model_version})

    return app


def _has_body(request: Request) -> bool:
    return request.headers.get("content-length") not in (None, "0") or bool(request.headers.get("transfer-encoding"))


class InferenceServer:
    """Serve a loaded artifact (``training.artifact.LoadedArtifact``) or a model path.

    The socket is bound here (an unusable host/port raises OSError at once); ``port=0`` picks
    a free port (see :attr:`url`). Use :meth:`start` / :meth:`stop` for a background thread
    (tests, benchmarks, the local profiles) or :meth:`serve_forever` (the CLI).
    """

    def __init__(self, model, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, *, workers: int | None = None,
                 max_pending: int = DEFAULT_MAX_PENDING, request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
                 keep_alive_timeout: int = DEFAULT_KEEP_ALIVE_TIMEOUT,
                 max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES):
        for name, value in (("max_body_bytes", max_body_bytes), ("max_pending", max_pending),
                            ("request_timeout", request_timeout), ("keep_alive_timeout", keep_alive_timeout),
                            ("max_header_bytes", max_header_bytes)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            model = load_artifact(model)
        self.artifact = model
        workers = int(workers or min(4, os.cpu_count() or 1))
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mhp-inference")
        app = build_app(model, max_body_bytes=max_body_bytes, executor=self._executor, max_pending=max_pending)
        config = uvicorn.Config(app, http=DeadlineH11Protocol, lifespan="off", access_log=False,
                                log_level="warning", timeout_keep_alive=keep_alive_timeout,
                                h11_max_incomplete_event_size=max_header_bytes, backlog=1024,
                                server_header=False)
        config.mhp_request_timeout = float(request_timeout)
        self._server = uvicorn.Server(config)
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(1024)
        except OSError:
            self._sock.close()
            self._executor.shutdown(wait=False)
            raise
        self._host = host
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1]

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def model_version(self) -> str:
        return self.artifact.model_version

    def start(self) -> "InferenceServer":
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name=f"mhp-inference-{self.port}", daemon=True)
        self._thread.start()
        for _ in range(500):  # until the loop accepts connections (the socket already queues them)
            if self._server.started or not self._thread.is_alive():
                break
            threading.Event().wait(0.01)
        return self

    def serve_forever(self) -> None:
        self._server.run(sockets=[self._sock])

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._sock.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "InferenceServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
