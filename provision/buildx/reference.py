"""Docker's image reference grammar, for refusing a bad reference before anything runs.

Written from distribution/reference (the grammar atop reference.go and the patterns in
regexp.go, github.com/distribution/reference), the parser the docker CLI and buildx read a
name with: reference := name [":" tag] ["@" digest], name := [domain "/"] path-component
["/" path-component]*.
"""

from __future__ import annotations

import re

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = (rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
           r"(?::[0-9]+)?")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"  # Go's \w is ASCII: letters, digits and _
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE = re.compile(rf"(?P<name>(?:{_DOMAIN}/)?(?P<path>{_PATH_COMPONENT}"
                       rf"(?:/{_PATH_COMPONENT})*))(?::(?P<tag>{_TAG}))?"
                       rf"(?:@(?P<digest>{_DIGEST}))?")
PATH_MAX = 255  # reference.go's RepositoryNameTotalLengthMax


def problem(ref: str, digest: bool = False) -> str | None:
    """Why docker would refuse `ref` (with a digest only if `digest`, as for an image to pull
    but not for a name to push to); None when it accepts it."""
    match = REFERENCE.fullmatch(ref)
    if match is not None and match["digest"] and not digest:
        return "a digest names content already pushed, a build pushes to a tag"
    if match is None:
        tag = ref.rpartition("/")[2].partition(":")[2].partition("@")[0]
        if "://" in ref:
            return "a URL: write the registry without http:// or https://"
        if REFERENCE.fullmatch(ref.lower()):
            return "the repository must be lowercase"
        if len(tag) > 128:
            return f"the tag is {len(tag)} characters long, docker's limit is 128"
        if ref.endswith(":"):
            return "the tag after ':' is empty"
        return "docker's reference grammar does not accept it"
    if len(match["path"]) > PATH_MAX:
        return f"the repository path is longer than {PATH_MAX} characters"
    return None


def repository(ref: str) -> str:
    """The repository of a valid reference: `registry/path`, without tag or digest."""
    match = REFERENCE.fullmatch(ref)
    assert match is not None, ref  # callers let only valid references through
    return match["name"]


def registry(ref: str) -> str:
    """The registry host of a reference, as docker reads it (no host: Docker Hub)."""
    first, slash, _ = ref.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


DOCKER_HUB = "docker.io"


def split(ref: str) -> tuple[str, str, str | None, str | None]:
    """A valid reference as docker reads it: (registry, repository, tag, digest), Docker Hub's
    short names made whole (`nginx` -> docker.io, library/nginx) and no tag read as `latest`
    unless a digest is given."""
    match = REFERENCE.fullmatch(ref)
    assert match is not None, ref  # callers let only valid references through
    host = registry(ref)
    path = match["name"].removeprefix(host + "/")
    if host == "index.docker.io":  # Docker Hub's old name
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    tag = match["tag"] or (None if match["digest"] else "latest")
    return host, path, tag, match["digest"]


def normalized(ref: str) -> str:
    """One spelling per image: `nginx`, `docker.io/nginx` and `docker.io/library/nginx:latest`
    are the same image, and so the same string."""
    host, path, tag, digest = split(ref)
    return f"{host}/{path}{':' + tag if tag else ''}{'@' + digest if digest else ''}"
