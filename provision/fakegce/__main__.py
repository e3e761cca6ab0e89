"""Server mode: `python -m provision.fakegce --port 8089` (binds 127.0.0.1 only)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from . import FakeGCE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provision.fakegce",
                                     description="A fake Compute Engine on loopback.")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--host", default="127.0.0.1", help="a 127.0.0.0/8 address")
    parser.add_argument("--operation-seconds", type=float, default=2.0,
                        help="how long an operation takes (default: 2)")
    parser.add_argument("--boot-seconds", type=float, default=1.0,
                        help="memory backend: RUNNING to host keys in guest attributes")
    parser.add_argument("--backend", choices=["memory", "docker"], default="memory",
                        help="what stands behind a VM: nothing, or a lab container")
    parser.add_argument("--lab-image", help="docker backend: the lab VM image tag")
    parser.add_argument("--registry-socket",
                        help="docker backend: unix socket of the lab registry, for the VMs")
    args = parser.parse_args(argv)
    backend = None
    if args.backend == "docker":
        if not args.lab_image:
            parser.error("--backend docker needs --lab-image (inv lab.up builds it)")
        from ..lab.backend import DockerBackend

        backend = DockerBackend(args.lab_image, args.registry_socket)
    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.0.0.0/8)")
    try:
        fake = FakeGCE(args.port, args.host, backend=backend,
                       operation_seconds=args.operation_seconds, boot_seconds=args.boot_seconds)
    except OSError as e:
        print(f"cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with fake:
        print(f"listening on {fake.endpoint}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
