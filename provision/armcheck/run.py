"""`inv check-arm IMAGE [-- CMD]`: is this image ready for Arm?

First the manifest: does the image have a linux/arm64 variant at all? Then the proof: pull it
and run it with `--platform linux/arm64` on an arm64 node of the farm, through its docker
context, or on this machine through QEMU when the farm has no arm64 node. CMD, when given,
runs in place of the image's entrypoint (`--entrypoint CMD0 IMAGE CMD1...`), so exactly CMD
runs.

The verdict (READY / NOT READY) is about the image only. A malformed reference, or one its
registry does not know, is bad input (exit 2). When the registry or the node cannot be reached
nothing is decided: `Unreachable` (exit 1) names what was lost and the command that repairs it.
A docker command that fails on the node is put down to the node when the node's engine no
longer answers through its context, to the image otherwise.

Ctrl-C and SIGTERM stop the check: the docker CLI it waits for is killed and the container it
started (named `archfarm-check-<random>`) is removed through the same docker context, for a
container outlives the CLI that started it.
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from .. import names
from ..buildx import docker_cli, reference
from ..errors import DockerError, UserError
from ..inventory import Farm
from ..platforms import ARM64, is_arm64, named, of_platform
from ..runner import Cancel, Interrupted

RUN_TIMEOUT = 600.0   # a pull, or the command's run
READ_TIMEOUT = 120.0  # a manifest read, a probe of the node
REMOVE_TRIES = 3

# What the shell's (and docker run's) exit codes say when the command could not run at all.
EXIT_MEANING = {126: ": the command cannot be executed", 127: ": the command was not found"}

class Unreachable(Exception):
    """The registry or the node could not be reached: nothing was decided about the image."""


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


@dataclass
class Target:
    """Where the image runs: an arm64 node's docker context, or this machine (None)."""

    context: str | None
    where: str


def check_reference(image: str) -> None:
    """Bad input (exit 2) before anything runs."""
    why = reference.problem(image, digest=True)
    if why:
        raise UserError(f"IMAGE {image!r}: not an image reference ({why}). Fix: write"
                        " [REGISTRY/]REPOSITORY[:TAG][@DIGEST], e.g. 127.0.0.1:5000/hello:demo"
                        " (the repository in lowercase, no spaces).")


def cause(done: docker_cli.Done) -> str:
    """The last line docker said, without its ssh wrapping (`... stderr=ssh: connect ...`),
    as a sentence."""
    lines = (done.stderr or done.stdout).strip().splitlines() or [f"exit {done.code}"]
    text = lines[-1].rsplit("stderr=", 1)[-1].removeprefix("ERROR: ").strip()[-300:]
    return text if text.endswith((".", "?", "!")) else f"{text}."


def docker(*args: str, context: str | None, cancel: Cancel,
           timeout: float = READ_TIMEOUT) -> docker_cli.Done:
    """`docker [--context C] ARGS`, stopped as soon as the check is cancelled; its exit code
    is the check's to read."""
    return docker_cli.run(*args, context=context, timeout=timeout, check=False, cancel=cancel)


@dataclass
class Check:
    """One check of `image` (running `command`, or the image's own when empty); `inventory`
    is repeated in the repair commands it names."""

    image: str
    command: list[str]
    cancel: Cancel
    inventory: str | None = None

    def fix(self, task: str) -> str:
        flag = f" -i {shlex.quote(self.inventory)}" if self.inventory else ""
        return f"`inv {task}{flag}`"

    def inspect(self, *args: str) -> str:
        """`docker buildx imagetools inspect IMAGE ARGS` on this machine."""
        done = docker("buildx", "imagetools", "inspect", self.image, *args, context=None,
                      cancel=self.cancel)
        if done.code == 0:
            return done.stdout
        registry = reference.registry(self.image)
        if cause(done).endswith("not found."):  # the registry answered: no such image
            raise UserError(f"IMAGE {self.image}: not found in the registry {registry}. Fix:"
                            " check the reference, or push the image first (e.g. `inv build"
                            " ... --push`).")
        raise Unreachable(f"could not read the manifest of {self.image} from the registry"
                          f" {registry}: {cause(done)} Nothing was decided about the image."
                          " Fix: make sure the registry is up and this machine reaches it (the"
                          f" lab's: `inv lab.up`), and is logged in to it (`docker login"
                          f" {registry}`).")

    def platforms(self) -> list[str]:
        """The platforms the image's manifest offers (an index lists them; a single
        manifest's platform is in its config)."""
        manifest = json.loads(self.inspect("--raw"))
        if "manifests" in manifest:
            listed = {docker_cli.platform_of(m) for m in manifest["manifests"]}
            return sorted(listed - {"unknown/unknown"})
        return [named(json.loads(self.inspect("--format", "{{json .Image}}")))]

    def target(self, farm: Farm) -> Target:
        """The farm's first arm64 node that has a docker context; this machine (through QEMU)
        when the farm has no arm64 node. An arm64 node whose context is gone is an error."""
        arm64 = [n for n in farm.expanded() if n.platform == ARM64]
        contexts = docker_cli.contexts()
        for node in arm64:
            if (context := names.alias(farm.farm, node.name)) in contexts:
                return Target(context, f"arm64 node {node.name}")
        if arm64:
            context = names.alias(farm.farm, arm64[0].name)
            raise Unreachable(f"arm64 node {arm64[0].name}: its docker context {context} is"
                              " missing on this machine (deleted, or the node was never"
                              f" registered), so nothing can run there; nothing was decided"
                              f" about {self.image}. Fix: {self.fix('register')} recreates it"
                              f" ({self.fix('provision')} if the node's VM does not exist).")
        handler = Path(f"/proc/sys/fs/binfmt_misc/qemu-{of_platform(ARM64).uname}")
        if not handler.exists():
            raise UserError("the farm has no arm64 node, and this machine cannot run arm64"
                            " binaries (no qemu-aarch64 binfmt handler). Fix: `inv provision`"
                            " a farm with an arm64 node, or install qemu-user-static and"
                            " binfmt-support here.")
        return Target(None, "this machine, through QEMU (the farm has no arm64 node)")

    def node_answers(self, target: Target) -> None:
        """Raise Unreachable, naming the node and the repair, if its engine does not answer."""
        if target.context is None:
            return
        done = docker("version", "--format", "{{.Server.Version}}", context=target.context,
                      cancel=self.cancel)
        if done.code:
            raise Unreachable(f"{target.where} does not answer through its docker context"
                              f" {target.context}: {cause(done)} Nothing was decided about"
                              f" {self.image}. Fix: {self.fix('status')} shows the node's"
                              f" state; {self.fix('provision')} starts a stopped VM and its"
                              " docker engine, and registers the node again.")

    def pull(self, target: Target) -> None:
        done = docker("pull", "--platform", ARM64, self.image, context=target.context,
                      cancel=self.cancel, timeout=RUN_TIMEOUT)
        if done.code:
            self.node_answers(target)
            registry = reference.registry(self.image)
            raise Unreachable(f"{target.where} could not pull {self.image}: {cause(done)}"
                              " Nothing was decided about the image. Fix: make sure"
                              f" {target.where} reaches the registry {registry} and is logged"
                              " in to it.")

    def run(self, target: Target) -> docker_cli.Done:
        """Run the image (or the command) in a container of its own name, removed if the
        check is interrupted or gives up on it."""
        name = f"archfarm-check-{secrets.token_hex(4)}"
        override = ["--entrypoint", self.command[0]] if self.command else []
        argv = ["run", "--rm", "--name", name, "--pull", "never", "--platform", ARM64,
                *override, self.image, *self.command[1:]]
        try:
            done = docker(*argv, context=target.context, cancel=self.cancel,
                          timeout=RUN_TIMEOUT)
        except Interrupted:
            raise Interrupted(f"interrupted: {remove_container(name, target)}; nothing was"
                              f" decided about {self.image}") from None
        except DockerError:
            remove_container(name, target)
            raise
        if done.code:
            self.node_answers(target)
        return done


def remove_container(name: str, target: Target) -> str:
    """Remove the container `name` and say so. Looked for again after a moment: the engine
    may still be creating it (the killed CLI's last request) or removing it (--rm)."""
    for _ in range(REMOVE_TRIES):
        docker_cli.run("rm", "-f", name, context=target.context, timeout=30, check=False)
        time.sleep(0.5)
        listed = docker_cli.run("ps", "-aq", "--filter", f"name=^{name}$",
                                context=target.context, timeout=30, check=False)
        if listed.code == 0 and not listed.stdout.strip():
            return f"the check's container {name} was removed from {target.where}"
    switch = f" --context {target.context}" if target.context else ""
    return (f"the check's container {name} may be left on {target.where}; remove it with"
            f" `docker{switch} rm -f {name}`")


def describe(command: list[str]) -> str:
    return f"`{shlex.join(command)}`" if command else "the image's default command"


def check(farm: Farm, image: str, command: list[str], cancel: Cancel,
          inventory: str | None = None) -> Verdict:
    check_reference(image)
    if command and not command[0].strip():
        raise UserError(f"-- {shlex.join(command)}: names no command to run. Fix: give the"
                        " command after --, e.g. `-- uname -m`, or leave -- out to run the"
                        " image's own.")
    this = Check(image, command, cancel, inventory)
    platforms = this.platforms()
    if not any(map(is_arm64, platforms)):  # linux/arm64/v8 is linux/arm64
        return Verdict(False, f"no {ARM64} variant: the image offers"
                              f" {', '.join(platforms) or 'no platform'}", platforms)
    target = this.target(farm)
    this.pull(target)
    done = this.run(target)
    output = (done.stdout + done.stderr).strip()
    verdict = Verdict(False, "", platforms, target.where, output[-2000:], command or None)
    if "exec format error" in output:
        verdict.reason = ("exec format error: the arm64 variant holds binaries of another"
                          " architecture")
    elif done.code:
        meaning = EXIT_MEANING.get(done.code, "")
        verdict.reason = (f"{describe(command)} failed on {target.where}"
                          f" (exit {done.code}{meaning})")
    else:
        verdict.ready = True
        verdict.reason = f"{describe(command)} ran on {target.where} (exit 0)"
    return verdict
