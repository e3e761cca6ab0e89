"""The lab's Compute Engine: the fake with the docker boot backend, served in the foreground.

    python -m provision.lab.gce --port 8089 --lab-image TAG [--registry-socket PATH]

`inv lab.up` starts it (see services.py); the fake itself knows nothing of the lab.
"""

from __future__ import annotations

import sys

from ..fakegce import serve_args, server_parser
from .backend import DockerBackend


def main(argv: list[str] | None = None) -> int:
    parser = server_parser(
        "python -m provision.lab.gce",
        "The fake Compute Engine on loopback, each RUNNING VM a lab container.",
        operation_seconds=1.0)
    parser.add_argument("--lab-image", required=True,
                        help="the lab VM image tag (inv lab.up builds it)")
    parser.add_argument("--registry-socket",
                        help="unix socket of the lab registry, forwarded into every VM")
    args = parser.parse_args(argv)
    # boot_seconds=0: a VM boots as long as its container takes, nothing is added
    return serve_args(parser, args, boot_seconds=0.0,
                      backend=DockerBackend(args.lab_image, args.registry_socket))


if __name__ == "__main__":
    sys.exit(main())
