"""Provenance and SBOM attestations: asked for on the command line or by the inventory's
defaults, made by each platform's build, kept through the merge and checked in the index.

Each node builds its platform with `--provenance`/`--sbom`; BuildKit pushes the platform as a
small index of the image and its attestation manifest. `imagetools create` from those indexes
keeps every attestation manifest (each names the image it attests), so the merged index holds
them all; the read-back asks buildx itself (`imagetools inspect --format '{{json
.Provenance}}'` and `.SBOM`) for each platform's. A node's engine can make attestations with
its own `docker` driver only on the containerd image store (Docker 24+, `inv configure`'s
`docker.containerd_store`).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

from ..errors import DockerError, UserError
from ..inventory import Farm
from . import docker_cli

KINDS = {"provenance": "Provenance", "sbom": "SBOM"}  # ours -> imagetools' format field


def defaults(farm: Farm, provenance: str | None, sbom: str | None
             ) -> tuple[str | None, str | None]:
    """--provenance and --sbom as buildx gets them: as given, else the inventory's default
    (None: buildx's own default). An SBOM asked as `true` uses the inventory's generator."""
    buildx = farm.buildx
    if provenance is None and buildx.provenance is not None:
        provenance = f"mode={buildx.provenance}" if buildx.provenance else "false"
    if sbom is None and buildx.sbom:
        sbom = "true"
    if sbom is not None and sbom.lower() in ("true", "1") and buildx.sbom_generator:
        sbom = f"generator={buildx.sbom_generator}"
    return provenance, sbom


def check_value(flag: str, value: str | None, what: str | None = None) -> None:
    """true, false, or KEY=VALUE[,KEY=VALUE] as buildx reads them (bad input: exit 2)."""
    if value is None or value.lower() in ("true", "false", "1", "0"):
        return
    if not re.fullmatch(r"[A-Za-z0-9_-]+=[^,]*(,[A-Za-z0-9_-]+=[^,]*)*", value):
        raise UserError(f"{what or flag} {value!r}: not true, false or KEY=VALUE[,...]. Fix:"
                        f" e.g. {flag} " + ("mode=max" if flag == "--provenance" else "true")
                        + f", or {flag} false.")
    if flag == "--provenance" and re.search(r"(^|,)mode=(?!(min|max)(,|$))", value):
        raise UserError(f"{what or flag} {value!r}: mode is min or max. Fix: e.g. {flag}"
                        " mode=max.")


def args(provenance: str | None, sbom: str | None) -> list[str]:
    return ([f"--provenance={provenance}"] if provenance is not None else []) + \
           ([f"--sbom={sbom}"] if sbom is not None else [])


def wanted(provenance: str | None, sbom: str | None) -> list[str]:
    """The attestations the index must hold for every platform: those asked for (buildx's
    own default, a minimal provenance where the driver can, is not checked)."""
    asked = {"provenance": provenance, "sbom": sbom}
    return [kind for kind, value in asked.items() if value is not None and not _off(value)]


def _off(value: str) -> bool:
    """`false`, `0`, or options with `disabled=true` (as buildx reads them)."""
    fields = [part.lower() for part in value.split(",")]
    return fields[0] in ("false", "0") or "disabled=true" in fields


def read_back(tag: str, platforms: list[str], kinds: list[str]
              ) -> tuple[dict[str, list[str]], str | None]:
    """(platform -> the attestations the index holds for it, problem): each kind asked of
    buildx at once; a platform lacking one is the problem."""
    def inspect(kind: str) -> dict | str:
        """Platform -> that platform's attestation (buildx prints one platform's bare), or
        why it could not be read."""
        try:
            done = docker_cli.run("buildx", "imagetools", "inspect", tag, "--format",
                                  "{{json ." + KINDS[kind] + "}}", timeout=120)
            found = json.loads(done.stdout.strip() or "{}")
        except DockerError as e:
            return f"reading its {kind} failed: {e}"
        except ValueError:
            return f"buildx printed its {kind} as no JSON object: {done.stdout[:200]!r}"
        if not isinstance(found, dict):
            return f"buildx printed its {kind} as {type(found).__name__}, not an object"
        if len(platforms) == 1 and platforms[0] not in found:
            return {platforms[0]: found}
        return found

    with ThreadPoolExecutor(len(kinds) or 1) as pool:
        found = dict(zip(kinds, pool.map(inspect, kinds), strict=True))
    errors = [text for text in found.values() if isinstance(text, str)]
    read = {k: v for k, v in found.items() if isinstance(v, dict)}
    held = {p: [k for k in kinds if k in read and read[k].get(p)] for p in platforms}
    missing = [f"{k} for {p}" for p in platforms for k in kinds if k not in held[p]]
    problem = (f"the index {tag}: {'; '.join(errors)}" if errors else
               f"the index {tag} lacks {', '.join(missing)}" if missing else None)
    return held, problem
