"""A fake Compute Engine that the real `google-cloud-compute` client talks to over HTTP.

    with FakeGCE() as gce:
        instances = gce.client(compute_v1.InstancesClient)
        ...
        gce.set_faults(stockouts=[{"zone": "us-central1-a", "machine_family": "t2a"}])
        gce.requests()  # [{"method": "instances.insert", "path": ..., "status": 200}, ...]

State per resource (state/), URL table (urls.py), handlers (responses.py), wire JSON
(serializers.py), rules (rules.py), catalog (catalog.py), faults (faults.py), boot backends
(backends.py), server (server.py), foreground server mode (`serve`, used by __main__).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from .backends import BootBackend, MemoryBackend
from .server import FakeServer
from .state import ComputeState
from .urls import MUTATING

__all__ = ["FakeGCE", "BootBackend", "MemoryBackend", "MUTATING", "serve", "server_parser",
           "serve_args"]


class FakeGCE:
    """The fake on a loopback port, served from a background thread."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1",
                 backend: BootBackend | None = None, operation_seconds: float = 0.2,
                 boot_seconds: float = 0.0, wait_seconds: float = 120.0):
        self.state = ComputeState(backend, operation_seconds, boot_seconds, wait_seconds)
        self.server = FakeServer(self.state, port, host)
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def start(self) -> FakeGCE:
        self._thread = threading.Thread(target=self.server.serve_forever, name="fakegce-http",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.state.close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeGCE:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def reset(self) -> None:
        self.state.reset()
        self.server.log.clear()

    def set_faults(self, **spec) -> None:
        """Replace the fault set (same keys as `POST /_fake/faults`)."""
        self.state.faults.configure(spec, self.state.defaults)

    def requests(self) -> list[dict]:
        return self.server.log.entries()

    def mutating_requests(self) -> list[dict]:
        return [r for r in self.requests() if r["method"] in MUTATING]

    def client_kwargs(self) -> dict:
        from google.auth.credentials import AnonymousCredentials

        return {"credentials": AnonymousCredentials(), "transport": "rest",
                "client_options": {"api_endpoint": self.endpoint}}

    def client(self, cls):
        """A real compute_v1 client class, instantiated against this fake."""
        return cls(**self.client_kwargs())


def serve(fake: FakeGCE) -> int:
    """Run `fake` in the foreground: start it, print `listening on {endpoint}` (flushed),
    block until SIGINT or SIGTERM, stop it and return 0. Call from the main thread."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with fake:
            print(f"listening on {fake.endpoint}", flush=True)
            while not stop.wait(0.5):  # a timed wait lets the handler run promptly
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def server_parser(prog: str, description: str, operation_seconds: float
                  ) -> argparse.ArgumentParser:
    """The options every foreground server of the fake takes; callers add their own."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--host", default="127.0.0.1", help="a 127.0.0.0/8 address")
    parser.add_argument("--operation-seconds", type=float, default=operation_seconds,
                        help=f"how long an operation takes (default: {operation_seconds:g})")
    return parser


def serve_args(parser: argparse.ArgumentParser, args: argparse.Namespace,
               **fake_kwargs: Any) -> int:
    """Bind the fake where `args` say (loopback only) and `serve` it; 1 if the port is taken."""
    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.0.0.0/8)")
    try:
        fake = FakeGCE(args.port, args.host, operation_seconds=args.operation_seconds,
                       **fake_kwargs)
    except OSError as e:
        print(f"cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    return serve(fake)
