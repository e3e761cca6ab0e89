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

OFF = ("false", "0", "disabled=true")
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
    if sbom in ("true", "1") and buildx.sbom_generator:
        sbom = f"generator={buildx.sbom_generator}"
    return provenance, sbom


def check_value(flag: str, value: str | None, what: str | None = None) -> None:
    """true, false, or KEY=VALUE[,KEY=VALUE] as buildx reads them (bad input: exit 2)."""
    if value is None or value.lower() in ("true", "false", "1", "0"):
        return
    if not re.fullmatch(r"[a-z-]+=[^,=]+(,[a-z-]+=[^,=]+)*", value):
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
    return [kind for kind, value in asked.items()
            if value is not None and value.lower() not in OFF]


def read_back(tag: str, platforms: list[str], kinds: list[str]
              ) -> tuple[dict[str, list[str]], str | None]:
    """(platform -> the attestations the index holds for it, problem): each kind asked of
    buildx at once; a platform lacking one is the problem."""
    def inspect(kind: str) -> dict:
        try:
            done = docker_cli.run("buildx", "imagetools", "inspect", tag, "--format",
                                  "{{json ." + KINDS[kind] + "}}", timeout=120)
        except DockerError as e:
            return {"error": str(e)}
        text = done.stdout.strip()
        return json.loads(text) if text.startswith("{") else {}

    with ThreadPoolExecutor(len(kinds) or 1) as pool:
        found = dict(zip(kinds, pool.map(inspect, kinds), strict=True))
    held = {p: [k for k in kinds if found[k].get(p)] for p in platforms}
    missing = [f"{k} for {p}" for p in platforms for k in kinds if k not in held[p]]
    problem = f"the index {tag} lacks {', '.join(missing)}" if missing else None
    return held, problem
