"""Server mode: `python -m provision.fakegce --port 8089` (binds 127.0.0.1 only).

The VMs have no backend here (the memory backend); whatever stands a container behind a VM
builds its own `FakeGCE(backend=...)` and calls `provision.fakegce.serve`.
"""

from __future__ import annotations

import argparse
import sys

from . import FakeGCE, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provision.fakegce",
                                     description="A fake Compute Engine on loopback.")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--host", default="127.0.0.1", help="a 127.0.0.0/8 address")
    parser.add_argument("--operation-seconds", type=float, default=2.0,
                        help="how long an operation takes (default: 2)")
    parser.add_argument("--boot-seconds", type=float, default=1.0,
                        help="memory backend: RUNNING to host keys in guest attributes")
    args = parser.parse_args(argv)
    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.0.0.0/8)")
    try:
        fake = FakeGCE(args.port, args.host, operation_seconds=args.operation_seconds,
                       boot_seconds=args.boot_seconds)
    except OSError as e:
        print(f"cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    return serve(fake)


if __name__ == "__main__":
    sys.exit(main())
