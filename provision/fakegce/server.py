"""The fake's HTTP server: routing, error bodies, the request log and the `/_fake/` control API.

Control API (JSON):
  POST /_fake/reset            clear all state and faults
  GET  /_fake/requests         the request log: [{"method", "path", "status"}, ...]
  POST /_fake/faults           replace the fault set (see faults.py); GET returns it
  POST /_fake/preempt          {"project", "zone", "instance"}: preempt a RUNNING Spot VM;
                               the answer is its zone operation (compute.instances.preempted)
  POST /_fake/guest-poweroff   {"project", "zone", "instance"}: the guest powers itself off
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from . import rules, urls
from .errors import GceError, injected
from .serializers import error_body, faults_json, operation_json
from .state import ComputeState

# Responses are fresh trees, never cyclic: skipping the cycle check saves 15% of encoding.
ENCODER = json.JSONEncoder(check_circular=False)


class RequestLog:
    def __init__(self) -> None:
        self._entries: list[dict] = []
        self._lock = threading.Lock()

    def add(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self._entries.append({"method": method, "path": path, "status": status})

    def entries(self) -> list[dict]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Headers(dict):
    """Request headers by lower-cased name: all the handler reads is `get`."""

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's session reuses one connection
    disable_nagle_algorithm = True  # small writes go out at once: no 40 ms delayed-ACK stall
    server: FakeServer
    # Set by the stdlib's handle_one_request and send_header, though typeshed omits them.
    raw_requestline: bytes
    _headers_buffer: list[bytes]

    def log_message(self, fmt: str, *args) -> None:  # the request log replaces stderr noise
        pass

    def parse_request(self) -> bool:
        """The stdlib's request parsing, less its `email` header parser (40% of the fake's own
        time per request): HTTP/1.0 and 1.1 with plain `Name: value` headers, as clients send.
        """
        # No command until the request line parses ("" as the stdlib's handler sets it when the
        # line is too long; typeshed declares `command: str`).
        self.command, self.close_connection = "", True
        self.request_version = self.default_request_version
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            if not words:
                return False
            self.request_version = "HTTP/1.1"  # so the error goes out with a status line
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request {self.requestline!r}")
            return False
        self.command, self.path, self.request_version = words
        headers = Headers()
        for _ in range(100):
            line = self.rfile.readline(65537)
            if len(line) > 65536:
                self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Line too long")
                return False
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = str(line, "iso-8859-1").partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        else:
            self.send_error(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "Too many headers")
            return False
        # Headers is the dict-backed stand-in for email.message.Message: only `get` is read.
        self.headers = headers  # type: ignore[assignment]
        connection = headers.get("connection", "").lower()
        self.close_connection = (connection == "close"
                                 or (self.request_version == "HTTP/1.0"
                                     and connection != "keep-alive"))
        return True

    def _send(self, status: int, body: object) -> None:
        data = ENCODER.encode(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self._headers_buffer.append(b"\r\n" + data)  # headers and body in one write
        self.flush_headers()

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as e:
            raise GceError(f"Invalid JSON payload received. {e.msg}.", reason="parseError") from e
        if not isinstance(body, dict):
            raise GceError("Invalid JSON payload received.", reason="parseError")
        return body

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.startswith("/_fake/"):
            return self._control(parts.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        route = urls.match(self.command, parts.path)
        if route is None:
            self._body()
            self.server.log.add("unknown", parts.path, 404)
            return self._send(404, error_body(GceError(f"Not Found: {self.command} {parts.path}",
                                                       status=404, reason="notFound")))
        method, handler, params = route
        state = self.server.state
        try:
            body = self._body()
            for key in urls.CHECKED_PARAMS:
                if key in params:
                    rules.path_name(key, params[key])
            if method in urls.UNKNOWN_ZONE_IS_INVALID:
                rules.zone(params["zone"])
            fault = state.faults.take_http_error(method)
            if fault and fault.get("after"):
                handler(state, params, query, body)  # it takes effect; the answer is lost
            if fault:
                raise injected(int(fault["status"]), fault.get("reason", "injected"),
                               params.get("project", "-"))
            status, result = 200, handler(state, params, query, body)
        except GceError as e:
            status, result = e.status, error_body(e)
        self.server.log.add(method, parts.path, status)
        self._send(status, result)

    def _control(self, path: str) -> None:
        try:
            body = json.loads(self._body_raw() or b"{}")
        except ValueError as e:
            return self._send(400, {"error": f"the body of {path} is not JSON: {e}"})
        state = self.server.state
        if (self.command, path) == ("POST", "/_fake/reset"):
            state.reset()
            self.server.log.clear()
            return self._send(200, {"reset": True})
        if (self.command, path) == ("GET", "/_fake/requests"):
            return self._send(200, self.server.log.entries())
        if (self.command, path) == ("GET", "/_fake/faults"):
            return self._send(200, faults_json(state.faults))
        if (self.command, path) == ("POST", "/_fake/faults"):
            if not isinstance(body, dict):
                return self._send(400, {"error": "/_fake/faults takes a JSON object"})
            try:
                state.faults.configure(body, state.defaults)
            except (ValueError, TypeError) as e:
                return self._send(400, {"error": str(e)})
            return self._send(200, faults_json(state.faults))
        if self.command == "POST" and path in ("/_fake/preempt", "/_fake/guest-poweroff"):
            return self._power_fault(path, body)
        return self._send(404, {"error": f"no control endpoint {self.command} {path}"})

    def _power_fault(self, path: str, body: object) -> None:
        """A VM taken down without an API call: preempted, or its guest powered off."""
        keys = ("project", "zone", "instance")
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) and body[k]
                                                 for k in keys):
            return self._send(400, {"error": f"{path} takes a JSON object with"
                                             " 'project', 'zone' and 'instance'"})
        instances = self.server.state.instances
        try:
            rules.zone(body["zone"])
            if path == "/_fake/preempt":
                op = instances.preempt(body["project"], body["zone"], body["instance"])
                status, result = 200, operation_json(op)
            else:
                instances.guest_poweroff(body["project"], body["zone"], body["instance"])
                status, result = 200, {"poweroff": True}
        except GceError as e:
            status, result = e.status, error_body(e)
        return self._send(status, result)

    def _body_raw(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _handle


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, state: ComputeState, port: int = 0, host: str = "127.0.0.1"):
        if not host.startswith("127."):
            raise ValueError("the fake binds loopback only")
        self.state = state
        self.log = RequestLog()
        super().__init__((host, port), Handler)

    @property
    def endpoint(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, bytes):  # typeshed allows it (AF_UNIX); an AF_INET address is str
            host = host.decode()
        return f"http://{host}:{port}"
