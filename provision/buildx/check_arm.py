"""`inv check-arm IMAGE [-- CMD]`: is this image ready for Arm?

First the manifest: does the image have a linux/arm64 variant at all? Then the proof: run it
(or CMD) with `--platform linux/arm64` on an arm64 node of the farm, through its docker
context, or on this machine through QEMU when the farm has no arm64 node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import names
from ..errors import UserError
from ..inventory import Farm
from ..platforms import ARM64, of_platform
from . import docker_cli

RUN_TIMEOUT = 600.0


@dataclass
class Verdict:
    ready: bool
    reason: str
    platforms: list[str]
    ran_on: str | None = None
    output: str = ""

    def to_json(self) -> dict:
        return {"ready": self.ready, "reason": self.reason, "platforms": self.platforms,
                "ran_on": self.ran_on, "output": self.output}


def platforms_of(image: str) -> list[str]:
    """The platforms the image's manifest offers (an index lists them; a single manifest's
    platform is in its config)."""
    try:
        manifest, _ = docker_cli.raw_manifest(image)
    except docker_cli.DockerError as e:
        raise UserError(f"cannot read the manifest of {image}: {e.output[-300:]}. Fix: check"
                        " the reference, and that this machine can reach its registry (and"
                        " is logged in to it).") from None
    if "manifests" in manifest:
        listed = {docker_cli.platform_of(m) for m in manifest["manifests"]}
        return sorted(listed - {"unknown/unknown"})
    config = json.loads(docker_cli.run("buildx", "imagetools", "inspect", image, "--format",
                                       "{{json .Image}}").stdout)
    text = f"{config.get('os', '?')}/{config.get('architecture', '?')}"
    return [f"{text}/{config['variant']}" if config.get("variant") else text]


def where_to_run(farm: Farm) -> tuple[str | None, str]:
    """(docker context, description): the farm's first arm64 node that has a context, or
    this machine (None) through QEMU."""
    contexts = docker_cli.contexts()
    for node in farm.expanded():
        name = names.alias(farm.farm, node.name)
        if node.platform == ARM64 and name in contexts:
            return name, f"arm64 node {node.name}"
    return None, "this machine, through QEMU (the farm has no registered arm64 node)"


def check(farm: Farm, image: str, command: list[str]) -> Verdict:
    platforms = platforms_of(image)
    if ARM64 not in platforms:
        return Verdict(False, f"no {ARM64} variant: the image offers"
                              f" {', '.join(platforms) or 'no platform'}", platforms)
    context, where = where_to_run(farm)
    handler = Path(f"/proc/sys/fs/binfmt_misc/qemu-{of_platform(ARM64).uname}")
    if context is None and not handler.exists():
        raise UserError("the farm has no registered arm64 node, and this machine cannot run"
                        " arm64 binaries (no qemu-aarch64 binfmt handler). Fix: `inv"
                        " provision` a farm with an arm64 node, or install qemu-user-static"
                        " and binfmt-support here.")
    done = docker_cli.run("run", "--rm", "--pull", "always", "--platform", ARM64, image, *command,
                      context=context, timeout=RUN_TIMEOUT, check=False)
    output = (done.stdout + done.stderr).strip()
    if context and ("error during connect" in output or "dial-stdio" in output):
        raise UserError(f"cannot reach {where} (its docker context over ssh failed): nothing"
                        " was decided about the image. Fix: `inv status`, then `inv provision`.")
    if "exec format error" in output:
        return Verdict(False, "exec format error: the arm64 variant holds binaries of another"
                              " architecture", platforms, where, output[-2000:])
    code = done.code
    if code:
        what = " ".join(command) or "the image's default command"
        return Verdict(False, f"{what} failed on {where} (exit {code})", platforms, where,
                       output[-2000:])
    return Verdict(True, f"{ARM64} variant ran on {where}", platforms, where, output[-2000:])
