"""uvicorn's h11 protocol with a request read deadline and JSON bodies for protocol-level errors.

uvicorn (0.54) times out idle keep-alive connections only after a response and sends a
plain-text 400 for any malformed request. This subclass adds:

* a read deadline: from the first byte of a request (or the connection's opening) the whole
  request -- line, headers and body -- must arrive within ``request_timeout`` seconds, else the
  server answers 408 (JSON) and closes. A client that sends half its headers and stalls holds a
  socket for at most that long and never a thread (the event loop serves every connection);
* protocol errors as ``{"error": ..., "status": ...}``: 400 malformed request, 414 request line
  longer than the h11 buffer (``h11_max_incomplete_event_size``), 431 headers longer than it.

The configuration travels on the uvicorn ``Config`` as ``mhp_request_timeout``.
"""
from __future__ import annotations

import asyncio
import json
import sys
from http import HTTPStatus

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DEFAULT_REQUEST_TIMEOUT = 10.0


def raw_json_error(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 error response that closes the connection (no h11 state needed)."""
    body = json.dumps({"error": message, "status": status}).encode()
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


class DeadlineH11Protocol(H11Protocol):
    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self._request_timeout = float(getattr(config, "mhp_request_timeout", DEFAULT_REQUEST_TIMEOUT))
        self._read_deadline: asyncio.TimerHandle | None = None
        self._line_seen = False   # the current request's first line has ended (for 414 vs 431)
        self._line_bytes = 0      # bytes of the current request line / head so far
        self._head_bytes = 0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        between_requests = self.cycle is None or self.cycle.response_complete
        if between_requests:
            if self._read_deadline is None:
                self._arm()
            if self._head_too_long(data):
                return
        super().data_received(data)
        if self.cycle is not None and not self.cycle.more_body:
            self._disarm()   # the whole request is in: the app's own time is not the client's

    def _head_too_long(self, data: bytes) -> bool:
        """414 / 431 for a request line / head beyond the limit even when it arrives whole
        (h11 enforces its buffer limit only while an event is incomplete)."""
        limit = self.config.h11_max_incomplete_event_size  # set by serving.server
        if not self._line_seen:
            end = data.find(b"\n")
            self._line_bytes += end if end >= 0 else len(data)
            self._line_seen = end >= 0
            if self._line_bytes > limit:
                self._refuse(414, f"request line longer than {limit} bytes")
                return True
        end = data.find(b"\r\n\r\n")
        self._head_bytes += end if end >= 0 else len(data)
        if self._head_bytes > limit:
            self._refuse(431, f"request headers longer than {limit} bytes")
            return True
        return False

    def _refuse(self, status: int, message: str) -> None:
        self._disarm()
        self.transport.write(raw_json_error(status, message))
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._line_seen = False
        self._line_bytes = self._head_bytes = 0
        self._read_deadline = self.loop.call_later(self._request_timeout, self._on_read_timeout)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _on_read_timeout(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            return
        self.transport.write(raw_json_error(
            408, f"request not received in full within {self._request_timeout:g} s; the connection is closed"))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        # called from uvicorn's `except h11.RemoteProtocolError` block: the error is the current exception
        exc = sys.exc_info()[1]
        status = getattr(exc, "error_status_hint", 400) if isinstance(exc, h11.RemoteProtocolError) else 400
        limit = self.config.h11_max_incomplete_event_size  # set by serving.server
        if status == 431 and not self._line_seen:
            status, message = 414, f"request line longer than {limit} bytes"
        elif status == 431:
            message = f"request headers longer than {limit} bytes"
        else:
            message = f"malformed HTTP request: {exc or msg}"
        self._refuse(status, message)
