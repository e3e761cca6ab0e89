"""archfarm's tasks. Thin by design: a map of task names and flags to the functions next to
each stage (`provision/cli.py` says how they run), exiting with their code.

Heavy imports (the Compute Engine client) happen inside task bodies, so `inv --list` and
`inv <task> --help` stay fast.
"""

import atexit
import gc

from invoke import Collection, Exit, Task, task
from invoke.parser import Argument

# Skip the interpreter's last garbage collection: with the Compute Engine client loaded it
# takes about a second after the recap (the task's output is complete by then).
atexit.register(gc.freeze)

INVENTORY = "inventory file (default: $ARCHFARM_INVENTORY, else inventory/lab.yaml)"
JSON = "print one JSON object on stdout at the end (progress goes to stderr)"
PER_NODE = "builds at once on one node (default 1)"
CACHE = ("registry: each platform's build cache kept in the image's repository"
         " (REPO:buildcache-<os>-<arch>), so a new or recreated node starts warm; none (default:"
         " the inventory's buildx.cache)")
HOURS_A_DAY = ("with --check: also price the month for this use, H hours of builds a day (0 < H"
               " <= 24): nodes with idle_stop_minutes run H hours a day, disks bill always")
STALL = ("seconds a build's log may stay silent before its node is taken for lost (default:"
         " the inventory's buildx.stall_timeout_seconds, 1200)")


class HelpKeepsH(Task):
    """A task whose flags leave -h to help: Invoke would give --hours-a-day the short flag -h,
    and `inv vms -h` would then wait for a number instead of printing the help."""

    def get_arguments(self, ignore_unknown_help=None):
        arguments = super().get_arguments(ignore_unknown_help)
        for argument in arguments:
            argument.names = tuple(name for name in argument.names if name != "h")
        return arguments


def _exit(code: int) -> None:
    if code:
        raise Exit(code=code)


def _run(target: str, **flags) -> None:
    """Run the task body `module:function` (imported inside the task frame) and exit with its
    code."""
    from provision import cli

    _exit(cli.call(target, **flags))


@task(help={"inventory": INVENTORY, "check": "show the plan, change nothing",
            "limit": "only these nodes (comma-separated)",
            "prune": "delete labelled VMs that are no longer in the inventory",
            "hours_a_day": HOURS_A_DAY, "json": JSON}, klass=HelpKeepsH)
def vms(c, inventory=None, check=False, limit=None, prune=False, hours_a_day=None, json=False):
    """Create, start or keep the farm's VMs (zone failover), and its SSH firewall rule."""
    _run("provision.cloud.tasks:vms", inventory=inventory, check=check, limit=limit, prune=prune,
         hours_a_day=hours_a_day, json_mode=json)


@task(help={"inventory": INVENTORY, "check": "report what would change, change nothing",
            "limit": "only these nodes (comma-separated)", "json": JSON})
def configure(c, inventory=None, check=False, limit=None, json=False):
    """Install Docker, QEMU/binfmt, the docker group and daemon.json on every VM, over SSH."""
    _run("provision.configure:configure", inventory=inventory, check=check, limit=limit,
         json_mode=json)


@task(help={"inventory": INVENTORY, "check": "show the plan and what would change",
            "limit": "only these nodes (comma-separated)", "hours_a_day": HOURS_A_DAY,
            "json": JSON}, klass=HelpKeepsH)
def provision(c, inventory=None, check=False, limit=None, hours_a_day=None, json=False):
    """Create the VMs, configure them, register them (`vms`, `configure`, `register`)."""
    _run("provision.pipeline:provision", inventory=inventory, check=check, limit=limit,
         hours_a_day=hours_a_day, json_mode=json)


@task(help={"inventory": INVENTORY, "check": "report what would change, change nothing",
            "json": JSON})
def register(c, inventory=None, check=False, json=False):
    """Make each VM a buildx node: ssh config entry, docker context, one builder, pinned."""
    _run("provision.buildx.tasks:register", inventory=inventory, check=check, json_mode=json)


@task(positional=[], iterable=["tag", "build_arg", "secret", "ssh", "label", "annotation"],
      help={
    "inventory": INVENTORY, "context": "the build context directory",
    "tag": "the image reference, e.g. 127.0.0.1:5000/hello:demo; repeatable: every tag names"
           " the one index",
    "file": "the Dockerfile, relative to --context (default Dockerfile)",
    "target": "the Dockerfile stage to build (FROM ... AS STAGE)",
    "platform": "platforms, comma-separated (default: every platform of the farm)",
    "strategy": "merge (each platform on its node's engine, merged by digest; the default) or"
                " builder (one build on the farm's buildx builder)",
    "push": "push to the registry in --tag", "output": "oci:PATH (builder strategy only)",
    "build_arg": "KEY=VALUE, repeatable",
    "secret": "id=ID,src=FILE or id=ID,env=VARIABLE for RUN --mount=type=secret, repeatable;"
              " the value goes to the build over its session, never to a node's disk or a log",
    "ssh": "default (this machine's ssh-agent) or ID=PATH, for RUN --mount=type=ssh,"
           " repeatable",
    "label": "KEY=VALUE, an image label, repeatable",
    "annotation": "[index:|manifest:]KEY=VALUE, repeatable (index: ones go on the merged index)",
    "no_cache": "build every step again", "pull": "pull newer base images",
    "provenance": "provenance attestation: true, false, mode=min or mode=max (default: the"
                  " inventory's buildx.provenance, else buildx's own)",
    "sbom": "SBOM attestation: true, false or generator=IMAGE (default: the inventory's"
            " buildx.sbom)",
    "allow_emulation": "build a platform no node runs natively, under QEMU",
    "cache": CACHE, "per_node": PER_NODE, "stall_timeout": STALL,
    "check": "print the schedule, build nothing", "json": JSON})
def build(c, context=None, tag=None, inventory=None, file=None, target=None, platform=None,
          strategy="merge", push=False, output=None, build_arg=None, secret=None, ssh=None,
          label=None, annotation=None, no_cache=False, pull=False, provenance=None, sbom=None,
          allow_emulation=False, cache=None, per_node=None, stall_timeout=None, check=False,
          json=False):
    """Build a multi-arch image on the farm, each platform natively on the least busy node up
    of that platform (moved once if that node is lost), then verify its index."""
    from pathlib import Path

    from provision.buildx.request import Request

    tags = list(tag or [])
    request = Request(context_dir=Path(context) if context else None,
                      tag=tags[0] if tags else "", also_tags=tags[1:], file=file,
                      stage=target, platforms=platform, strategy=strategy, push=push,
                      output=output, build_args=list(build_arg or []),
                      secrets=list(secret or []), ssh=list(ssh or []), labels=list(label or []),
                      annotations=list(annotation or []), no_cache=no_cache, pull=pull,
                      provenance=provenance, sbom=sbom, allow_emulation=allow_emulation,
                      cache=cache, per_node=per_node or 1, stall_timeout=stall_timeout,
                      check=check)
    _run("provision.buildx.tasks:build", inventory=inventory, request=request, json_mode=json)


BAKE_VALUE_FLAGS = {"-f", "--file", "-t", "--target", "-i", "--inventory", "-p", "--per-node",
                    "-s", "--stall-timeout"}


def _bake_words() -> None:
    """`inv bake [FILE] [TARGET ...]`: Invoke has no variadic positional arguments, so the
    words after `bake` become its --file and --target before Invoke reads the task's arguments
    (its argument list is read after this file is loaded). With --file given, every word is a
    target."""
    import invoke.main

    core = getattr(invoke.main.program, "core", None)
    argv = getattr(core, "unparsed", None)
    if not argv or argv[0] != "bake":
        return
    rest, words, flags = argv[1:], [], []
    while rest and rest[0] != "--":
        token = rest.pop(0)
        if token in BAKE_VALUE_FLAGS and rest:
            flags += [token, rest.pop(0)]
        elif token.startswith("-"):
            flags.append(token)
        else:
            words.append(token)
    has_file = any(f in ("-f", "--file") or f.startswith("--file=") for f in flags)
    if words and not has_file:
        flags += ["--file", words.pop(0)]
    argv[1:] = flags + [arg for target in words for arg in ("--target", target)] + rest


_bake_words()


# No --cache flag (the inventory's buildx.cache applies): Invoke would give it -h, every other
# letter of it being taken, and `inv bake -h` would no longer be help.
@task(positional=[], iterable=["target"], help={
    "file": "the bake file: docker-bake.hcl, docker-bake.json or a compose file (default:"
            " what `docker buildx bake` finds here); also the first word after bake",
    "target": "a target to build, repeatable (default: the file's default group); also the"
              " words after FILE",
    "inventory": INVENTORY, "per_node": PER_NODE, "stall_timeout": STALL,
    "check": "print the schedule, build nothing",
    "allow_emulation": "build a platform no node runs natively, under QEMU", "json": JSON})
def bake(c, file=None, target=None, inventory=None, per_node=None, stall_timeout=None,
         check=False, allow_emulation=False, json=False):
    """Build every target of a bake file over the whole farm: `inv bake [FILE] [TARGET ...]`.
    Each target x platform is a job spread over the nodes of its platform; each target's
    platforms are merged into its index and read back. The inventory's buildx.cache applies."""
    from provision.buildx.bake import Options

    options = Options(file=file, targets=list(target or []), per_node=per_node or 1,
                      stall_timeout=stall_timeout, check=check, allow_emulation=allow_emulation)
    _run("provision.buildx.tasks:bake", inventory=inventory, options=options, json_mode=json)


CHECK_ARM_HELP = {
    "ref": "the image reference",
    "manifests": "check every image of these Kubernetes manifests: a file, a directory of YAML,"
                 " or - for stdin (`helm template ... | inv check-arm --manifests -`)",
    "compose": "check every image of this compose file's services",
    "manifest_only": "with --manifests/--compose: read the platforms only, not the binaries",
    "run": "with --manifests/--compose: also run each READY image on an arm64 node of the farm",
    "sarif": "with --manifests/--compose: also write the findings as SARIF 2.1.0 to FILE",
    "inventory": INVENTORY, "json": JSON}
CHECK_ARM_USAGE = """Usage: inv check-arm [--options] IMAGE [-- CMD]
       inv check-arm --manifests PATH|- [--compose FILE] [--options] [-- CMD]
       inv check-arm --compose FILE [--options] [-- CMD]"""


class ImageOrWorkload(Argument):
    """check-arm's IMAGE: required unless --manifests or --compose names a workload (Invoke
    has no optional positional argument; it asks each positional one for its value)."""

    workload: tuple[Argument, ...] = ()

    @property
    def value(self):
        given = super().value
        return "" if given is None and any(a.value for a in self.workload) else given

    @value.setter
    def value(self, arg):
        self.set_value(arg, cast=True)


class CheckArmTask(HelpKeepsH):
    def get_arguments(self, ignore_unknown_help=None):
        arguments = super().get_arguments(ignore_unknown_help)
        for argument in arguments:
            if argument.name == "ref":
                argument.__class__ = ImageOrWorkload
                argument.workload = tuple(a for a in arguments
                                          if a.name in ("manifests", "compose"))
        return arguments


# `ref`, not `image`: an argument starting with i would take -i from --inventory.
@task(name="check-arm", positional=["ref"], help=CHECK_ARM_HELP,
      klass=CheckArmTask)
def check_arm(c, ref=None, manifests=None, compose=None, manifest_only=False, run=False,
              sarif=None, inventory=None, json=False):
    """Is IMAGE, or every image of a workload, ready for arm64? One IMAGE: its platforms, then
    a run on an arm64 node. A workload: each image's platforms and the ELF machine of its arm64
    entrypoint, from the registry (no pulls), with fixes and GKE scheduling hints. `-- CMD`
    runs CMD in place of the entrypoint. Exit 0 only if everything is READY."""
    import sys
    import textwrap

    if ref in ("-h", "--help"):  # Invoke hands a pending positional argument the flag
        flags = [(_flag(a), a.help or "") for a in check_arm.get_arguments() if a.name != "ref"]
        width = max(len(flag) for flag, _ in flags) + 2
        doc = textwrap.fill(" ".join(check_arm.__doc__.split()), 92, initial_indent="  ",
                            subsequent_indent="  ")
        options = "\n".join(f"  {flag:<{width}} {text}" for flag, text in flags)
        print(f"{CHECK_ARM_USAGE}\n\nDocstring:\n{doc}\n\nOptions:\n{options}")
        return
    command = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
    if not manifests and not compose:
        workload_only = [flag for flag, given in (("--manifest-only", manifest_only),
                                                   ("--run", run), ("--sarif", sarif)) if given]
        _run("provision.armcheck.tasks:check_arm", inventory=inventory, image=ref,
             command=command, workload_only=workload_only, json_mode=json)
        return
    _run("provision.armcheck.tasks:check_workload", manifests=manifests, compose=compose,
         image=ref or None, manifest_only=manifest_only, run=run, sarif=sarif, inventory=inventory,
         command=command, json_mode=json)


def _flag(argument: Argument) -> str:
    """`-i STRING, --inventory=STRING`, as Invoke's own --help writes a flag."""
    value = "=STRING" if argument.takes_value else ""
    short = [f"-{n}{' STRING' if value else ''}" for n in argument.names if len(n) == 1]
    return ", ".join(short + [f"--{(argument.name or '').replace('_', '-')}{value}"])


@task(help={"inventory": INVENTORY, "json": JSON})
def status(c, inventory=None, json=False):
    """Show the farm's nodes: zone, platform, machine type, state, IP, docker, emulated."""
    _run("provision.status:status", inventory=inventory, json_mode=json)


@task(help={"inventory": INVENTORY, "yes": "do not ask for confirmation",
            "check": "show what would be deleted, change nothing", "json": JSON})
def destroy(c, inventory=None, yes=False, check=False, json=False):
    """Delete the farm's VMs (only those with its labels) and its firewall rule."""
    _run("provision.cloud.tasks:destroy", inventory=inventory, yes=yes, check=check, json_mode=json)


@task(help={"inventory": INVENTORY, "json": JSON})
def doctor(c, inventory=None, json=False):
    """Check every prerequisite of the farm, one line each (ok / problem and its fix)."""
    _run("provision.doctor:doctor", inventory=inventory, json_mode=json)


@task(help={"port": "loopback port to listen on (default 8089)",
            "operation_seconds": "how long each operation takes (default 2)"})
def fake(c, port=8089, operation_seconds=2.0):
    """Run the fake Compute Engine in the foreground on 127.0.0.1 (Ctrl-C stops it)."""
    from provision.fakegce.__main__ import main

    _exit(main(["--port", str(port), "--operation-seconds", str(operation_seconds)]))


@task(name="up", help={"json": JSON})
def lab_up(c, json=False):
    """Start the local lab: fake Compute Engine with container VMs, registry, docker engine."""
    _run("provision.lab.tasks:up", json_mode=json)


@task(name="down", help={"json": JSON})
def lab_down(c, json=False):
    """Stop the lab and remove every lab container and volume (the image stays cached)."""
    _run("provision.lab.tasks:down", json_mode=json)


@task(name="status", help={"json": JSON})
def lab_status(c, json=False):
    """Show the lab's processes and VM containers."""
    _run("provision.lab.tasks:status", json_mode=json)


lab = Collection("lab", lab_up, lab_down, lab_status)
ns = Collection(doctor, vms, configure, register, provision, build, bake, check_arm, status,
                destroy, fake, lab)
