"""Network faults on 127.0.0.1 for tests and benchmarks: a closed port, a black hole, a lost reply.

* :func:`closed_port`: a port nothing listens on (connect is refused at once).
* :class:`BlackHole`: accepts connections and never answers (the client's read timeout decides);
  counts the connections, so a test can assert that code did not touch the network at all.
* :class:`LostReplyProxy`: a TCP proxy to ``upstream`` that forwards every request but, while
  ``drop`` > 0, swallows the upstream's reply and closes the client's connection: the request took
  effect, the caller saw a failure (the "SNS succeeded, the reply was lost" case).
"""
from __future__ import annotations

import socket
import threading


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _Listener:
    def __init__(self):
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._open: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        return None

    def close(self) -> None:
        self._closed = True
        for c in self._open:
            try:
                c.close()
            except OSError:
                pass
        # shutdown wakes the accept() blocked in the thread on Linux; close alone does not
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BlackHole(_Listener):
    """Accepts, reads nothing, answers nothing."""


class LostReplyProxy(_Listener):
    def __init__(self, upstream_host: str, upstream_port: int, drop: int = 1):
        self.upstream = (upstream_host, upstream_port)
        self.drop = drop            # replies still to swallow
        self.dropped = 0
        self._lock = threading.Lock()
        super().__init__()

    def _serve(self, conn: socket.socket) -> None:
        up = socket.create_connection(self.upstream)
        threading.Thread(target=self._pump, args=(conn, up), daemon=True).start()
        threading.Thread(target=self._replies, args=(up, conn), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def _replies(self, up: socket.socket, client: socket.socket) -> None:
        try:
            while data := up.recv(65536):
                with self._lock:
                    lose = self.drop > 0
                    if lose:
                        self.drop -= 1
                        self.dropped += 1
                if lose:      # the request was served upstream; the caller sees its connection drop
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            for s in (up, client):
                try:
                    s.close()
                except OSError:
                    pass
