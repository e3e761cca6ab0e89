"""The lab's Compute Engine: the fake with the docker boot backend, served in the foreground.

    python -m provision.lab.gce --port 8089 --lab-image TAG [--registry-socket PATH]

`inv lab.up` starts it (see services.py); the fake itself knows nothing of the lab.
"""

from __future__ import annotations

import argparse
import sys

from ..fakegce import FakeGCE, serve
from .backend import DockerBackend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m provision.lab.gce",
        description="The fake Compute Engine on loopback, each RUNNING VM a lab container.")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--host", default="127.0.0.1", help="a 127.0.0.0/8 address")
    parser.add_argument("--lab-image", required=True,
                        help="the lab VM image tag (inv lab.up builds it)")
    parser.add_argument("--registry-socket",
                        help="unix socket of the lab registry, forwarded into every VM")
    parser.add_argument("--operation-seconds", type=float, default=1.0,
                        help="how long an operation takes (default: 1)")
    args = parser.parse_args(argv)
    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.0.0.0/8)")
    backend = DockerBackend(args.lab_image, args.registry_socket)
    try:  # boot_seconds=0: a VM boots as long as its container takes, nothing is added
        fake = FakeGCE(args.port, args.host, backend=backend,
                       operation_seconds=args.operation_seconds, boot_seconds=0.0)
    except OSError as e:
        print(f"cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    return serve(fake)


if __name__ == "__main__":
    sys.exit(main())
