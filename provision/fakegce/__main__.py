"""Server mode: `python -m provision.fakegce --port 8089` (binds 127.0.0.1 only).

The VMs have no backend here (the memory backend); whatever stands a container behind a VM
builds its own `FakeGCE(backend=...)` and calls `provision.fakegce.serve`.
"""

from __future__ import annotations

import sys

from . import serve_args, server_parser


def main(argv: list[str] | None = None) -> int:
    parser = server_parser("python -m provision.fakegce", "A fake Compute Engine on loopback.",
                           operation_seconds=2.0)
    parser.add_argument("--boot-seconds", type=float, default=1.0,
                        help="memory backend: RUNNING to host keys in guest attributes")
    args = parser.parse_args(argv)
    return serve_args(parser, args, boot_seconds=args.boot_seconds)


if __name__ == "__main__":
    sys.exit(main())
