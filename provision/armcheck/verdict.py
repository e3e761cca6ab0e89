"""Each image of a workload, judged for linux/arm64 from the registry alone, in parallel.

READY: the image offers a linux/arm64 variant and the binary its entrypoint execs there is an
AArch64 ELF (or, under --manifest-only, the variant is listed: its binaries are not read).
NOT READY: no arm64 variant, no such image, or an arm64 variant whose entrypoint is a binary
of another machine ("mislabelled": the manifest says arm64, the content is x86-64).
UNKNOWN: nothing could be decided (the registry cannot be reached or refuses us, a layer
cannot be read, the entrypoint is missing or not a binary); the reason says which.

The fix for an image without an arm64 variant is a multi-arch tag of the same repository when
the registry has one (the tag without its arch suffix first, then its version's siblings,
then `latest`); otherwise a rebuild with `inv build`, each platform on a node of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from ..buildx.docker_cli import platform_of
from ..platforms import ARM64, is_arm64, named
from ..runner import Cancel
from . import layers
from .registry import Client, Manifest, NotFound, Ref, RegistryError
from .workload import Use

READY, NOT_READY, UNKNOWN = "READY", "NOT READY", "UNKNOWN"
RANK = {NOT_READY: 0, UNKNOWN: 1, READY: 2}  # when an image's programs disagree, the least wins
WORKERS = 16          # registry requests in flight: one registry, small bodies
CANDIDATE_TAGS = 6    # tags read while looking for a multi-arch one to propose
MAX_NESTING = 3       # an index's arm64 entry that is an index, followed this deep
# Arch suffixes people put on single-platform tags: `1.2-amd64`, `1.2_x86_64`, `1.2-linux-amd64`.
ARCH_SUFFIX = re.compile(r"[-_.](?:linux[-_.])?(?:amd64|x86[-_]64|x64|i386|386|arm64v8|"
                         r"arm64|aarch64|armv7|arm32v7|arm|ppc64le|s390x|riscv64)$")


@dataclass
class Finding:
    """What was found about one image; `image` as the workload first writes it."""

    image: str
    platforms: list[str] = field(default_factory=list)
    verdict: str = UNKNOWN
    why: str = ""
    entrypoint: layers.Entrypoint | None = None
    fix: str | None = None
    ran: dict | None = None

    @property
    def ready(self) -> bool:
        return self.verdict == READY

    def to_json(self) -> dict:
        point = self.entrypoint
        binary = point.binary if point else None
        return {"image": self.image, "platforms": self.platforms, "verdict": self.verdict,
                "why": self.why, "fix": self.fix, "ran": self.ran,
                "entrypoint": None if point is None else {
                    "argv0": point.argv0, "path": binary.path if binary else None,
                    "machine": binary.machine if binary else None,
                    "via": list(binary.via) if binary else []}}


@dataclass
class Judge:
    """Judges images with one registry client and one layer cache, shared by every image of
    the run (images built on one base read its layers once)."""

    client: Client
    manifest_only: bool = False
    cancel: Cancel = field(default_factory=Cancel)
    cache: layers.LayerCache = field(default_factory=layers.LayerCache)
    _stopped: Cancel = field(default_factory=Cancel)

    def all(self, images: list[str], done: Callable[[Finding], None] = lambda f: None,
            uses: Sequence[Sequence[Use]] | None = None) -> list[Finding]:
        """Every image, WORKERS at a time, in the order given; `done` is told of each as it
        is decided (progress). Ctrl-C ends the wait at once: a request in flight is left to
        its timeout in a thread nobody waits for."""
        def one(image: str, used: Sequence[Use]) -> Finding:
            finding = self.image(image, used)
            done(finding)
            return finding

        self._stopped = Cancel()
        pool = ThreadPoolExecutor(max_workers=max(1, min(WORKERS, len(images))))
        try:
            futures = [pool.submit(one, image, used)
                       for image, used in zip(images, uses or [()] * len(images), strict=True)]
            pending = set(futures)
            while pending:
                _, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
                self._check()
                for future in futures:
                    if future.done() and future.exception():
                        raise future.exception()  # type: ignore[misc]
            return [f.result() for f in futures]
        finally:
            self._stopped.set()  # workers still queued or running stop at their next step
            pool.shutdown(wait=False, cancel_futures=True)

    def _check(self) -> None:
        """Between two requests: raise Interrupted on Ctrl-C, or once all() has given up."""
        self.cancel.check()
        self._stopped.check()

    def image(self, image: str, uses: Sequence[Use] = ()) -> Finding:
        """One image, as `uses` run it (the image's entrypoint, or their commands)."""
        finding = Finding(image)
        ref = Ref.parse(image)
        try:
            self._judge(ref, finding, uses)
        except NotFound as e:
            finding.verdict, finding.why, finding.fix = NOT_READY, e.problem, e.fix
        except RegistryError as e:
            finding.verdict, finding.why, finding.fix = UNKNOWN, e.problem, e.fix
        except layers.LayerError as e:
            finding.verdict, finding.why = UNKNOWN, str(e)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            finding.verdict = UNKNOWN  # a manifest or config not as the OCI spec has them
            finding.why = (f"the registry serves a manifest or image config for {image} that"
                           f" archfarm cannot read ({type(e).__name__}: {e})")
            finding.fix = f"check it with `docker buildx imagetools inspect --raw {image}`"
        return finding

    def _judge(self, ref: Ref, finding: Finding, uses: Sequence[Use]) -> None:
        self._check()
        top = self.client.manifest(ref)
        arm64, config, finding.platforms = self._arm64_variant(ref, top)
        if arm64 is None:
            finding.verdict = NOT_READY
            finding.why = (f"no {ARM64} variant: the image offers"
                           f" {', '.join(finding.platforms) or 'no platform'}")
            finding.fix = self._fix(ref)
            return
        if self.manifest_only:
            finding.verdict = READY
            finding.why = f"{ARM64} variant listed (binaries not checked: --manifest-only)"
            return
        if config is None:
            self._check()
            config = json.loads(self.client.blob(ref, arm64.body["config"]["digest"]))
        said = named(config)
        if not is_arm64(said):
            finding.verdict = NOT_READY
            finding.why = (f"mislabelled: the index lists a {ARM64} variant, but its image"
                           f" config says {said}")
            finding.fix = self.rebuild(ref)
            return
        blobs = [layers.Layer(d["digest"], d.get("mediaType", ""), d.get("size", 0))
                 for d in arm64.body.get("layers", [])]

        def open_blob(layer: layers.Layer):
            self._check()
            return self.client.open_blob(ref, layer.digest)

        judged: list[tuple[str, str, layers.Entrypoint]] = []
        missing: list[str] = []
        for argv0, runners in programs_of(uses, config).items():
            settings = dict(config.get("config") or {})
            if argv0 is not None:
                settings.update(Entrypoint=[argv0], Cmd=None)
            point = layers.entrypoint(dict(config, config=settings), blobs, open_blob,
                                      self.cache)
            runner = None if argv0 is None else runners[0]
            if runner is not None and point.binary is None:
                missing.append(f"{argv0}, the command of {runner}")
                continue  # a volume may bring it: no evidence either way
            judged.append((*self._program(point, runner), point))
        if not judged:
            finding.verdict = UNKNOWN
            finding.why = (f"the {ARM64} variant holds none of the programs the workload runs"
                           f" ({'; '.join(missing)})")
            finding.fix = "check the commands, or whether a volume brings them"
            return
        # NOT READY beats UNKNOWN beats READY, whatever the order of the uses.
        finding.verdict, finding.why, finding.entrypoint = min(judged,
                                                               key=lambda j: RANK[j[0]])
        if finding.verdict == NOT_READY:
            finding.fix = self.rebuild(ref)
        elif finding.verdict == UNKNOWN:
            finding.fix = ("run it on an arm64 node to see whether it starts (--run, or"
                           f" `inv check-arm {finding.image}`)")

    @staticmethod
    def _program(point: layers.Entrypoint, runner: Use | None) -> tuple[str, str]:
        """One program the image runs (its entrypoint, or the command of a use, `runner`),
        judged: (verdict, why)."""
        who = "its entrypoint" if runner is None else f"the command of {runner}"
        binary = point.binary
        if binary is None or binary.machine is None:
            return UNKNOWN, (f"in the {ARM64} variant, {who} {point.argv0}:"
                             f" {point.problem or 'not an ELF binary'}")
        path = describe_path(point.argv0, binary)
        named = f"{who} {path}" if runner is None else f"{who}, {path},"
        for other in binary.also:  # `env` in front of a script's interpreter
            if other.machine is not None and other.arch != "arm64":
                return NOT_READY, (f"mislabelled: in the {ARM64} variant, {named} runs through"
                                   f" {other.path}, an {other.machine} ELF binary")
        said = f"{named} is an {binary.machine} ELF binary"
        if binary.arch == "arm64":
            return READY, f"{ARM64} variant; {said}"
        return NOT_READY, f"mislabelled: in the {ARM64} variant, {said}"

    def _arm64_variant(self, ref: Ref, top: Manifest, depth: int = 0,
                       ) -> tuple[Manifest | None, dict | None, list[str]]:
        """The linux/arm64 manifest if any, its image config when it had to be read to
        know (a single manifest), and every platform the image offers. An index whose arm64
        entry is itself an index is followed (a few levels)."""
        if not top.is_index:
            config = json.loads(self.client.blob(ref, top.body["config"]["digest"]))
            platform = named(config)
            return (top if is_arm64(platform) else None), config, [platform]
        entries = [(platform, e) for e in top.body["manifests"]
                   if (platform := platform_of(e)) != "unknown/unknown"]  # attestations
        platforms = sorted({platform for platform, _ in entries})
        arm = next((e for platform, e in entries if is_arm64(platform)), None)
        if arm is None:
            return None, None, platforms
        self._check()
        manifest = self.client.manifest(ref.at(arm["digest"]))
        if manifest.is_index and depth < MAX_NESTING:
            nested, config, _ = self._arm64_variant(ref, manifest, depth + 1)
            return nested, config, platforms
        if manifest.is_index:
            raise ValueError(f"indexes nested more than {MAX_NESTING} deep")
        return manifest, None, platforms

    def _fix(self, ref: Ref) -> str:
        """A multi-arch tag of the same repository that has arm64, else the rebuild."""
        tag = self._multi_arch_tag(ref)
        if tag:
            return (f"use {ref.at(tag)}: a multi-arch tag of the same repository, with a"
                    f" {ARM64} variant")
        return self.rebuild(ref)

    @staticmethod
    def rebuild(image: Ref | str) -> str:
        return (f"rebuild it for linux/amd64 and {ARM64} with `inv build --context DIR --tag"
                f" {image} --push` (each platform built natively on a node of its own)")

    def _multi_arch_tag(self, ref: Ref) -> str | None:
        """The tag without its arch suffix, asked for at once (the tag list of a big
        repository may not reach it); then the candidates of the repository's tag list."""
        base = ARCH_SUFFIX.sub("", ref.tag or "")
        if base and base != ref.tag and self._has_arm64(ref, base):
            return base
        try:
            tags = self.client.tags(ref)
        except RegistryError:
            return None  # a registry that does not list tags: no proposal, still the rebuild
        for tag in candidate_tags(ref.tag or "", tags)[:CANDIDATE_TAGS]:
            if tag != base and self._has_arm64(ref, tag):
                return tag
        return None

    def _has_arm64(self, ref: Ref, tag: str) -> bool:
        self._check()
        try:
            arm64, _, _ = self._arm64_variant(ref, self.client.manifest(ref.at(tag)))
        except (RegistryError, KeyError, TypeError, ValueError, AttributeError):
            return False
        return arm64 is not None


def pinned_elsewhere(finding: Finding, uses: list[Use]) -> None:
    """A compose service that pins another platform (`platform: linux/amd64`) runs that
    variant even on an Arm host, emulated if at all: the image is not ready as used."""
    pins = [u for u in uses if u.platform and not is_arm64(u.platform)]
    if not pins:
        return
    said = "; ".join(f"{u} pins platform {u.platform} ({u.file}:{u.line}): on Arm it runs that"
                     " variant, emulated" for u in pins)
    fix = "; ".join(f"remove `platform: {u.platform}` from {u}, or set {ARM64}" for u in pins)
    if finding.verdict == NOT_READY:
        finding.why += f"; also, {said}"
        finding.fix = f"{finding.fix}; {fix}" if finding.fix else fix
    else:
        finding.verdict, finding.why, finding.fix = NOT_READY, said, fix


def programs_of(uses: Sequence[Use], config: dict) -> dict[str | None, list[Use]]:
    """What the uses run, each with the uses that run it: None for the image's entrypoint,
    else the program a use names in its place (a container's `command:`, or its `args:` when
    the image has no entrypoint for them to be arguments of). No uses: the entrypoint."""
    has_entrypoint = bool((config.get("config") or {}).get("Entrypoint"))
    found: dict[str | None, list[Use]] = {}
    if not uses:
        return {None: []}
    for use in uses:
        argv0 = None
        if use.command:
            argv0 = use.command[0] or None
        elif use.args and not has_entrypoint:
            argv0 = use.args[0] or None
        found.setdefault(argv0, []).append(use)
    return found


def candidate_tags(tag: str, tags: list[str]) -> list[str]:
    """The tags worth trying for a multi-arch twin of `tag`, best first: `tag` without its
    arch suffix, then tags of the same version line (`1.2.3`, `1.2`, `1.2.3-alpine` for
    `1.2.3-amd64`; the closest first), then `latest`."""
    base = ARCH_SUFFIX.sub("", tag)
    version = base.split("-")[0].split(".")

    def distance(other: str) -> int | None:
        parts = other.split("-")[0].split(".")
        shared = min(len(parts), len(version))
        return abs(len(parts) - len(version)) if parts[:shared] == version[:shared] else None

    line = [t for t in tags if t != tag and not ARCH_SUFFIX.search(t)
            and distance(t) is not None]
    ordered = [base, *sorted(line, key=lambda t: (distance(t), len(t))), "latest"]
    known = set(tags)
    seen: list[str] = []
    for t in ordered:
        if t in known and t != tag and t not in seen:
            seen.append(t)
    return seen


def describe_path(argv0: str, binary: layers.Binary) -> str:
    """`/bin/sh (-> /usr/bin/busybox)`: the entrypoint as written, and what it resolves to."""
    return argv0 if binary.path == argv0 else f"{argv0} (-> {binary.path})"
