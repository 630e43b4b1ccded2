"""Wiring and running the console: a workspace -> the scoring path (as ``mhp score`` builds it) ->
the app, served by uvicorn on 127.0.0.1. Without an endpoint URL (local / aws-local) it starts the
inference server in process on the workspace's model (``<state>/model/model.tar.gz``).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import uvicorn

from core.workspace import Workspace
from features.store import open_store
from serving.config import ServingConfig
from serving.runtime import make_endpoint
from serving.scoring import Scorer
from serving.server import InferenceServer

from .app import create_app
from .context import Console


@dataclass
class Running:
    console: Console
    url: str
    _server: uvicorn.Server
    _thread: threading.Thread
    _inference: Any

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        if self._inference is not None:
            self._inference.stop()
        self.console.close()


def build_console(ws: Workspace, config: ServingConfig | None = None, endpoint_url: str | None = None,
                  at: datetime | None = None) -> tuple[Console, Any]:
    """The console and the inference server it started (None when ``endpoint_url`` or the aws profile
    names the endpoint)."""
    config = (config or ServingConfig()).with_(profile=ws.profile)
    inference = None
    if endpoint_url:
        config = config.with_(endpoint_url=endpoint_url)
    elif ws.profile != "aws":
        model = Path(ws.model) / "model.tar.gz"
        if not model.exists():
            raise FileNotFoundError(f"no model at {model}: run `mhp train` (or `mhp demo`) first, "
                                    "or pass --endpoint-url")
        inference = InferenceServer(str(model), port=0).start()
        config = config.with_(endpoint_url=inference.url)
    store = open_store(ws.profile, ws.feast_state, None if ws.profile == "local" else ws.root)
    scorer = Scorer(store, make_endpoint(config), None, retry=config.invoke_retry)
    default_at: Callable[[], datetime] = (lambda: at) if at else (lambda: datetime.now(timezone.utc))
    try:
        return Console(ws, store, scorer, config, default_at), inference
    except BaseException:
        if inference is not None:
            inference.stop()
        raise


def start(console: Console, inference: Any = None, host: str = "127.0.0.1", port: int = 0) -> Running:
    """Serve in a background thread; returns once the socket is listening."""
    server = uvicorn.Server(uvicorn.Config(create_app(console), host=host, port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="console", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise OSError(f"console could not listen on {host}:{port}")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return Running(console, f"http://{host}:{bound}", server, thread, inference)
