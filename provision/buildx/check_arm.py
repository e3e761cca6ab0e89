"""`inv check-arm IMAGE [-- CMD]`: is this image ready for Arm?

First the manifest: does the image have a linux/arm64 variant at all? Then the proof: run it
with `--platform linux/arm64` on an arm64 node of the farm, through its docker context, or on
this machine through QEMU when the farm has no arm64 node. CMD, when given, runs in place of
the image's entrypoint (`--entrypoint CMD0 IMAGE CMD1...`), so exactly CMD runs.

Ctrl-C and SIGTERM stop the check: the docker CLI it waits for is killed and the container it
started (named `archfarm-check-<random>`) is removed through the same docker context, for a
container outlives the CLI that started it.
"""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import names
from ..errors import DockerError, UserError
from ..inventory import Farm
from ..platforms import ARM64, of_platform
from ..runner import Cancel, Interrupted
from . import docker_cli

RUN_TIMEOUT = 600.0
POLL_SECONDS = 0.2
REMOVE_TRIES = 3


@dataclass
class Verdict:
    ready: bool
    reason: str
    platforms: list[str]
    ran_on: str | None = None
    output: str = ""
    command: list[str] | None = None  # what ran in place of the entrypoint; None: the default

    def to_json(self) -> dict:
        return {"ready": self.ready, "reason": self.reason, "platforms": self.platforms,
                "ran_on": self.ran_on, "output": self.output, "command": self.command}


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


def docker(*args: str, context: str | None, cancel: Cancel,
           timeout: float) -> docker_cli.Done:
    """`docker [--context C] ARGS`, killed as soon as the check is cancelled: a signal sent to
    this process alone never reaches the docker child, so it is stopped here."""
    argv = [docker_cli.binary(), *(["--context", context] if context else []), *args]
    deadline = time.monotonic() + timeout
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as child:
        while True:
            try:  # communicate() may be called again after a timeout, losing no output
                out, err = child.communicate(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if cancel.is_set() or time.monotonic() > deadline:
                    child.kill()
                    cancel.check()
                    raise DockerError(args, 124, f"no answer within {timeout:.0f} s") from None
    cancel.check()  # a Ctrl-C on the terminal reaches the child too: it ended because of it
    return docker_cli.Done(out, err, child.returncode)


def run_argv(image: str, command: list[str], name: str) -> list[str]:
    """`docker run` arguments that run exactly `command` (the image's entrypoint replaced),
    or the image's own entrypoint and command when none is given."""
    override = ["--entrypoint", command[0]] if command else []
    return ["run", "--rm", "--name", name, "--pull", "always", "--platform", ARM64, *override,
            image, *command[1:]]


def run_container(image: str, command: list[str], context: str | None, where: str,
                  cancel: Cancel) -> docker_cli.Done:
    """Run the image (or the command) in a container of its own name, removed if the check
    is interrupted or gives up on it."""
    name = f"archfarm-check-{secrets.token_hex(4)}"
    try:
        return docker(*run_argv(image, command, name), context=context, cancel=cancel,
                      timeout=RUN_TIMEOUT)
    except Interrupted:
        raise Interrupted(f"interrupted: {remove_container(name, context, where)}; nothing"
                          f" was decided about {image}") from None
    except DockerError:
        remove_container(name, context, where)
        raise


def remove_container(name: str, context: str | None, where: str) -> str:
    """Remove the container `name` and say so. Looked for again after a moment: the engine
    may still be creating it (the killed CLI's last request) or removing it (--rm)."""
    for _ in range(REMOVE_TRIES):
        docker_cli.run("rm", "-f", name, context=context, timeout=30, check=False)
        time.sleep(0.5)
        listed = docker_cli.run("ps", "-aq", "--filter", f"name=^{name}$", context=context,
                                timeout=30, check=False)
        if listed.code == 0 and not listed.stdout.strip():
            return f"the check's container {name} was removed from {where}"
    switch = f" --context {context}" if context else ""
    return (f"the check's container {name} may be left on {where}; remove it with"
            f" `docker{switch} rm -f {name}`")


def describe(command: list[str]) -> str:
    return f"`{shlex.join(command)}`" if command else "the image's default command"


def check(farm: Farm, image: str, command: list[str], cancel: Cancel) -> Verdict:
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
    cancel.check()
    done = run_container(image, command, context, where, cancel)
    output = (done.stdout + done.stderr).strip()
    if context and ("error during connect" in output or "dial-stdio" in output):
        raise UserError(f"cannot reach {where} (its docker context over ssh failed): nothing"
                        " was decided about the image. Fix: `inv status`, then `inv provision`.")
    verdict = Verdict(False, "", platforms, where, output[-2000:], command or None)
    if "exec format error" in output:
        verdict.reason = ("exec format error: the arm64 variant holds binaries of another"
                          " architecture")
    elif done.code:
        meaning = EXIT_MEANING.get(done.code, "")
        verdict.reason = f"{describe(command)} failed on {where} (exit {done.code}{meaning})"
    else:
        verdict.ready, verdict.reason = True, f"{describe(command)} ran on {where} (exit 0)"
    return verdict


# What the shell's (and docker run's) exit codes say when the command could not run at all.
EXIT_MEANING = {126: ": the command cannot be executed", 127: ": the command was not found"}
