"""The lab's Compute Engine: the fake with the docker boot backend, served in the foreground.

    python -m provision.lab.gce --port 8089 --lab-image STEM [--registry-socket PATH]

`inv lab.up` starts it (see services.py); the fake itself knows nothing of the lab.
"""

from __future__ import annotations

import sys

from ..fakegce import serve_args, server_parser
from .backend import DockerBackend
from .image import suite_tags


def main(argv: list[str] | None = None) -> int:
    parser = server_parser(
        "python -m provision.lab.gce",
        "The fake Compute Engine on loopback, each RUNNING VM a lab container.",
        operation_seconds=1.0)
    parser.add_argument("--lab-image", required=True, metavar="STEM",
                        help="the lab VM images' tag stem: VMs boot STEM-trixie, or"
                             " STEM-bookworm from a Debian 12 image (inv lab.up builds them)")
    parser.add_argument("--registry-socket",
                        help="unix socket of the lab registry, forwarded into every VM")
    args = parser.parse_args(argv)
    # boot_seconds=0: a VM boots as long as its container takes, nothing is added
    return serve_args(parser, args, boot_seconds=0.0,
                      backend=DockerBackend(suite_tags(args.lab_image), args.registry_socket))


if __name__ == "__main__":
    sys.exit(main())
