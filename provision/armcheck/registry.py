"""A small registry v2 (OCI distribution) client: what `inv check-arm` reads of an image
without pulling it, namely its index or manifest, its image config and some of its layer blobs.

It reads registries the way docker does: plain http only for loopback registries (docker
treats those as insecure), https for every other host, Docker Hub at registry-1.docker.io;
credentials from the user's docker config (`auths`, `credHelpers`, `credsStore`); Basic and
Bearer-token auth challenges, tokens cached per (registry, scope). One Client is shared by the
threads that check a workload's images at once.

Failures are `RegistryError`s, one sentence each naming the registry, the cause and the fix:
`Unreachable` (nothing answered), `Denied` (401/403 once our credentials were tried) and
`NotFound` (404). A refused connection is never retried, so a lost registry is reported at once;
a 429/502/503/504 is retried twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .. import loopback
from ..buildx import docker_cli, reference
from ..errors import UserError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)

DOCKER_HUB = reference.DOCKER_HUB
DOCKER_HUB_API = "registry-1.docker.io"
DOCKER_HUB_KEY = "https://index.docker.io/v1/"  # Docker Hub's key in a docker config

MANIFEST_MAX = 4 * 1024 * 1024  # docker's own limit on a manifest's size
CONFIG_MAX = 16 * 1024 * 1024   # an image config is kilobytes; its history makes it longer
TAGS_PAGE = 1000                # the most tags asked for in one request
HELPER_TIMEOUT = 30.0           # a credential helper may wait on a keychain
POOL_SIZE = 32                  # connections kept per host: the caller runs ~20 threads
TOKEN_MARGIN = 10.0             # seconds before a token's expiry it is no longer used
USER_AGENT = "archfarm-check-arm"

# Busy or rate-limited registries get two more tries; a refused connection none (connect=0),
# so that an unreachable registry is reported at once. read=1: a pooled keep-alive connection
# the server closed meanwhile is tried once more.
RETRY = Retry(total=2, connect=0, read=1, other=0, status=2,
              status_forcelist=(429, 502, 503, 504), allowed_methods=frozenset({"GET", "HEAD"}),
              backoff_factor=0.3, respect_retry_after_header=False, raise_on_status=False)


class RegistryError(Exception):
    """A registry could not give what was asked: `problem. Fix: fix.`"""

    def __init__(self, registry: str, problem: str, fix: str):
        self.registry, self.problem, self.fix = registry, problem, fix
        super().__init__(f"{problem.rstrip('.')}. Fix: {fix.rstrip('.')}.")


class Unreachable(RegistryError):
    """Connection refused, a name that does not resolve, a timeout or a TLS failure."""


class Denied(RegistryError):
    """401/403 once the credentials we have (or none) were tried."""


class NotFound(RegistryError):
    """404: the repository, the manifest (tag or digest) or the blob is unknown."""


@dataclass(frozen=True)
class Ref:
    """An image reference as docker reads it, Docker Hub's short names made whole."""

    registry: str          # "docker.io" for Docker Hub, "127.0.0.1:5000"
    repository: str        # "library/nginx"
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, text: str) -> Ref:
        """`text` read as docker would; ValueError(why) when docker would refuse it."""
        why = reference.problem(text, digest=True)
        if why is not None:
            raise ValueError(why)
        return cls(*reference.split(text))

    @property
    def reference(self) -> str:
        """What the manifest is asked for by: the digest, else the tag."""
        return self.digest or self.tag or "latest"

    def at(self, tag_or_digest: str) -> Ref:
        """The same repository at another tag or digest (a digest has a ':')."""
        if ":" in tag_or_digest:
            return Ref(self.registry, self.repository, None, tag_or_digest)
        return Ref(self.registry, self.repository, tag_or_digest, None)

    def __str__(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.registry}/{self.repository}{tag}{digest}"


@dataclass(frozen=True)
class Manifest:
    digest: str            # Docker-Content-Digest, else the sha256 of the body as served
    media_type: str
    body: dict

    @property
    def is_index(self) -> bool:
        """An OCI index or a Docker manifest list: one manifest per platform (a body without
        a known media type is an index when it lists manifests)."""
        if self.media_type in MANIFEST_TYPES:
            return self.media_type in INDEX_TYPES
        return isinstance(self.body.get("manifests"), list)


@dataclass(frozen=True)
class Credentials:
    username: str
    secret: str = field(repr=False)
    source: str = ""              # where they come from, for messages (never the secret)
    identity_token: bool = False  # an OAuth refresh token (`docker login` to some registries)


def default_docker_config() -> Path:
    """$DOCKER_CONFIG/config.json, else ~/.docker/config.json, as the docker CLI reads."""
    return docker_cli.config_dir() / "config.json"


def is_loopback(registry: str) -> bool:
    """127.0.0.0/8, localhost or [::1], with or without a port: docker reads these over http."""
    if registry.startswith("["):
        return loopback.is_loopback(registry[1:].partition("]")[0])
    return loopback.is_loopback(registry.partition(":")[0])


def base_url(registry: str) -> str:
    """Where a registry's v2 API is served."""
    if registry == DOCKER_HUB:
        return f"https://{DOCKER_HUB_API}"
    return f"{'http' if is_loopback(registry) else 'https'}://{registry}"


def login_command(registry: str) -> str:
    return "docker login" if registry == DOCKER_HUB else f"docker login {registry}"


class Client:
    """A registry v2 client shared by threads: one requests.Session per registry host."""

    def __init__(self, *, docker_config: Path | None = None, timeout: float = 20.0):
        self.timeout = timeout
        self.docker_config = docker_config or default_docker_config()
        config = _read_docker_config(self.docker_config)
        self._auths = _auths_of(config, self.docker_config)
        self._helpers: dict[str, str] = config.get("credHelpers") or {}
        self._store: str | None = config.get("credsStore") or None
        self._sessions: dict[str, requests.Session] = {}
        self._sessions_lock = threading.Lock()
        # (registry, scope) -> (the Authorization header, when it stops being used)
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self._tokens_lock = threading.Lock()
        self._credentials: dict[str, Credentials | None] = {}
        self._credentials_lock = threading.Lock()

    # --- the API -------------------------------------------------------------------------

    def manifest(self, ref: Ref) -> Manifest:
        """The index or manifest at ref.reference, its digest checked when ref has one."""
        if ref.digest:
            _hasher(ref, ref.digest)  # a digest we can check, before anything is asked
        url = self._url(ref, f"manifests/{ref.reference}")
        with self._get(ref, url, {"Accept": ", ".join(MANIFEST_TYPES)},
                       what="manifest", stream=True) as response:
            content = _capped(ref, response, MANIFEST_MAX, "the manifest",
                              "check the reference: it does not name an image manifest")
            served_type = response.headers.get("Content-Type", "").partition(";")[0].strip()
            served_digest = response.headers.get("Docker-Content-Digest", "")
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise RegistryError(ref.registry, f"registry {ref.registry} served for {ref} "
                                "something that is not a JSON manifest",
                                "check the reference; if it is right, the registry's content "
                                "is damaged: push the image again")
        if ref.digest:
            _verify(ref, ref.digest, content, "manifest")
        digest = ref.digest or served_digest or f"sha256:{hashlib.sha256(content).hexdigest()}"
        media_type = served_type if served_type in MANIFEST_TYPES else body.get("mediaType", "")
        return Manifest(digest=digest, media_type=media_type or served_type, body=body)

    def blob(self, ref: Ref, digest: str) -> bytes:
        """A small blob (an image config) of ref's repository, its digest checked."""
        _hasher(ref, digest)
        with self._get(ref, self._url(ref, f"blobs/{digest}"), {"Accept-Encoding": "identity"},
                       what="blob", digest=digest, stream=True) as response:
            content = _capped(ref, response, CONFIG_MAX, f"blob {digest}",
                              "check the image: an image config is a few kilobytes")
        _verify(ref, digest, content, "blob")
        return content

    @contextmanager
    def open_blob(self, ref: Ref, digest: str) -> Iterator[BinaryIO]:
        """A blob streamed as stored (a layer stays compressed); closed on exit. Its digest is
        checked when it is read to the end (a mismatch raises RegistryError then)."""
        hasher = _hasher(ref, digest)
        response = self._get(ref, self._url(ref, f"blobs/{digest}"),
                             {"Accept-Encoding": "identity"}, what="blob", stream=True,
                             digest=digest)
        stream = io.BufferedReader(_CheckedBlob(ref, digest, hasher, response),
                                   buffer_size=1 << 16)
        try:
            yield stream
        finally:
            stream.close()
            response.close()

    def tags(self, ref: Ref, limit: int = 1000) -> list[str]:
        """The repository's tags as the registry lists them, following its pages (Link), at
        most `limit`."""
        url: str | None = self._url(ref, f"tags/list?n={min(limit, TAGS_PAGE)}")
        found: list[str] = []
        while url and len(found) < limit:
            with self._get(ref, url, {}, what="tags") as response:
                try:
                    page = response.json().get("tags") or []
                except (ValueError, AttributeError):
                    page = None
                if not isinstance(page, list):
                    raise RegistryError(ref.registry, f"registry {ref.registry} served a tag list "
                                        f"for {ref.repository} that is not JSON",
                                        "retry; if it persists, look at the registry's logs")
                found += [tag for tag in page if isinstance(tag, str)]
                url = _next_page(response, self._url(ref, ""))
        return found[:limit]

    def close(self) -> None:
        with self._sessions_lock:
            for session in self._sessions.values():
                session.close()
            self._sessions.clear()

    # --- requests, auth ------------------------------------------------------------------

    def _url(self, ref: Ref, path: str) -> str:
        return f"{base_url(ref.registry)}/v2/{ref.repository}/{path}"

    def _session(self, registry: str) -> requests.Session:
        with self._sessions_lock:
            session = self._sessions.get(registry)
            if session is None:
                session = requests.Session()
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=POOL_SIZE,
                                      max_retries=RETRY)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers["User-Agent"] = USER_AGENT
                self._sessions[registry] = session
            return session

    def _send(self, registry: str, method: str, url: str, **options) -> requests.Response:
        """One request, whatever it answers; Unreachable when nothing answered."""
        try:
            return self._session(registry).request(method, url, timeout=self.timeout, **options)
        except requests.RequestException as error:
            raise _unreachable(registry, url, error, self.timeout) from None

    def _get(self, ref: Ref, url: str, headers: dict[str, str], *, what: str,
             stream: bool = False, digest: str | None = None) -> requests.Response:
        """GET `url` of ref's repository, answering an auth challenge once; a 2xx response,
        else the RegistryError its status means. Redirects (blob storage) are followed;
        requests drops the Authorization header when the host changes."""
        scope = f"repository:{ref.repository}:pull"
        authorization = self._cached(ref.registry, scope)
        for attempt in range(2):
            sent = dict(headers, Authorization=authorization) if authorization else headers
            response = self._send(ref.registry, "GET", url, headers=sent, stream=stream)
            if response.status_code != 401 or attempt == 1:
                break
            challenge = response.headers.get("WWW-Authenticate", "")
            response.close()
            authorization = self._authorize(ref, scope, challenge)
        if response.ok:
            return response
        try:
            raise self._failure(ref, response, what, digest)
        finally:
            response.close()

    def _cached(self, registry: str, scope: str) -> str | None:
        with self._tokens_lock:
            cached = self._tokens.get((registry, scope))
        if cached is None or cached[1] < time.monotonic():
            return None
        return cached[0]

    def _authorize(self, ref: Ref, scope: str, challenge: str) -> str:
        """The Authorization header that answers a 401's challenge (cached for the scope)."""
        kind, _, rest = challenge.strip().partition(" ")
        params = {key.lower(): quoted if quoted or not bare else bare
                  for key, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^,\s]*))', rest)}
        credentials = self._credentials_for(ref.registry)
        if kind.lower() == "basic":
            if credentials is None or credentials.identity_token:
                raise self._denied(ref, credentials)
            pair = f"{credentials.username}:{credentials.secret}".encode()
            authorization, lifetime = f"Basic {base64.b64encode(pair).decode()}", 3600.0
        elif kind.lower() == "bearer":
            token, lifetime = self._token(ref, params, scope, credentials)
            authorization = f"Bearer {token}"
        else:
            raise Denied(ref.registry, f"registry {ref.registry} asks for {kind or 'an'} "
                         f"authentication to read {ref.repository}, which archfarm cannot "
                         "answer (only Basic and Bearer)",
                         "check the registry's address; docker could not pull from it either")
        with self._tokens_lock:
            self._tokens[(ref.registry, scope)] = (authorization, time.monotonic() + lifetime)
        return authorization

    def _token(self, ref: Ref, params: dict[str, str], scope: str,
               credentials: Credentials | None) -> tuple[str, float]:
        """A bearer token from the challenge's realm, and how long it may be used."""
        realm = params.get("realm", "")
        if urlsplit(realm).scheme not in ("http", "https") or not urlsplit(realm).netloc:
            raise RegistryError(ref.registry, f"registry {ref.registry} names the token service "
                                f"{realm!r} in its auth challenge, which is not an http(s) URL",
                                "the registry's token auth is misconfigured: tell its operator")
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        if credentials is not None and credentials.identity_token:
            # docker's OAuth form: the refresh token `docker login` stored is traded for a token
            form = dict(query, grant_type="refresh_token", refresh_token=credentials.secret,
                        client_id=USER_AGENT)
            response = self._send(ref.registry, "POST", realm, data=form)
        else:
            auth = (credentials.username, credentials.secret) if credentials else None
            response = self._send(ref.registry, "GET", realm, params=query, auth=auth)
        with response:
            if response.status_code in (401, 403):
                raise self._denied(ref, credentials)
            try:
                body = response.json() if response.ok else {}
            except ValueError:
                body = {}
        token = (body.get("token") or body.get("access_token")) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(ref.registry, f"the token service {realm} of registry "
                                f"{ref.registry} answered HTTP {response.status_code} without "
                                f"a token for {ref.repository}",
                                "retry; if it persists, tell the registry's operator")
        try:
            lifetime = float(body.get("expires_in") or 60)
        except (TypeError, ValueError):
            lifetime = 60.0
        return token, max(lifetime - TOKEN_MARGIN, 1.0)

    # --- credentials ---------------------------------------------------------------------

    def _credentials_for(self, registry: str) -> Credentials | None:
        """The credentials docker would use for `registry` (None: anonymous), looked up once:
        credHelpers[host], else credsStore, else auths."""
        with self._credentials_lock:
            if registry not in self._credentials:
                self._credentials[registry] = self._look_up(registry)
            return self._credentials[registry]

    def _look_up(self, registry: str) -> Credentials | None:
        server = DOCKER_HUB_KEY if registry == DOCKER_HUB else registry
        if server in self._helpers:
            return self._from_helper(registry, server, self._helpers[server],
                                     f"credHelpers entry for {server}")
        if self._store:
            return self._from_helper(registry, server, self._store, "credsStore")
        if server in self._auths:
            return self._auths[server]
        wanted = _hostname(server)
        for key, credentials in self._auths.items():
            if _hostname(key) == wanted:
                return credentials
        return None

    def _from_helper(self, registry: str, server: str, name: str,
                     entry: str) -> Credentials | None:
        """`docker-credential-NAME get` with the server on stdin, as docker runs it."""
        program = f"docker-credential-{name}"
        try:
            done = subprocess.run([program, "get"], input=server, capture_output=True,
                                  text=True, timeout=HELPER_TIMEOUT)
        except OSError as error:
            raise RegistryError(registry, f"the docker config {_shown(self.docker_config)} has "
                                f"the credential helper {program} give the credentials for "
                                f"{server} ({entry}), and it cannot run "
                                f"({error.strerror or error})",
                                f"install {program} on PATH, or remove the {entry} from "
                                f"{_shown(self.docker_config)}") from None
        except subprocess.TimeoutExpired:
            raise RegistryError(registry, f"the credential helper {program} did not answer "
                                f"within {HELPER_TIMEOUT:g} s for {server}",
                                "unlock the store it reads (a keychain may wait for a password) "
                                "and retry") from None
        said = (done.stdout.strip() or done.stderr.strip())
        if done.returncode != 0:
            if "credentials not found" in said.lower():
                return None
            raise RegistryError(registry, f"the credential helper {program} failed for {server} "
                                f"(exit {done.returncode}): {said[-300:]}",
                                f"run `echo {server} | {program} get` to see why, or "
                                f"`{login_command(registry)}` again")
        try:
            answer = json.loads(done.stdout)
            username, secret = answer.get("Username") or "", answer.get("Secret") or ""
        except (ValueError, AttributeError):
            raise RegistryError(registry, f"the credential helper {program} answered for "
                                f"{server} with something that is not its JSON",
                                f"run `echo {server} | {program} get` to see it, and repair "
                                "or replace the helper") from None
        if not secret:
            return None
        return Credentials(username, secret, source=f"credential helper {program}",
                           identity_token=username == "<token>")

    # --- errors --------------------------------------------------------------------------

    def _denied(self, ref: Ref, credentials: Credentials | None) -> Denied:
        login = login_command(ref.registry)
        if credentials is None:
            return Denied(ref.registry, f"registry {ref.registry} refuses access to "
                          f"{ref.repository} anonymously (or the repository does not exist)",
                          f"`{login}` with an account that may pull {ref.repository}, and "
                          "check the image's name")
        who = "" if credentials.identity_token else f" (user {credentials.username})"
        return Denied(ref.registry, f"registry {ref.registry} refuses access to "
                      f"{ref.repository} with the credentials of {credentials.source}{who}",
                      f"`{login}` with an account that may pull {ref.repository}, and check "
                      "the image's name")

    def _failure(self, ref: Ref, response: requests.Response, what: str,
                 digest: str | None = None) -> RegistryError:
        """The RegistryError a non-2xx answer means (after auth was answered)."""
        status, host = response.status_code, ref.registry
        said = _error_text(response)
        because = f" ({said})" if said else ""
        if response.history and urlsplit(response.url).netloc != urlsplit(
                response.history[0].url).netloc:
            # Redirected to blob storage: its URL is signed (never shown), and a refusal there
            # is an expired signature or a skewed clock, not our credentials.
            storage = urlsplit(response.url).hostname
            return RegistryError(host, f"the blob storage of registry {host} ({storage})"
                                 f" answered HTTP {status} for blob {digest or '?'} of"
                                 f" {ref.repository}",
                                 "retry; if it persists, check this machine's clock (signed"
                                 " storage URLs expire) and the registry's status")
        if status in (401, 403):
            return self._denied(ref, self._credentials_for(host))
        if status == 404:
            if "NAME_UNKNOWN" in said or what == "tags":
                return NotFound(host, f"registry {host} has no repository {ref.repository}"
                                f"{because}", f"check the image's name, or push it to {host}")
            if what == "blob":
                return NotFound(host, f"registry {host} has no blob {digest} in "
                                f"{ref.repository}{because}",
                                f"push the image to {host} again: its content is incomplete")
            kind = "digest" if ref.digest else "tag"
            return NotFound(host, f"registry {host} has no manifest for {kind} {ref.reference} "
                            f"in {ref.repository}{because}",
                            f"check the {kind} and the repository's name, or push the image")
        if status == 429:
            return RegistryError(host, f"registry {host} refuses more requests for now "
                                 f"(HTTP 429, rate limit){because}",
                                 f"wait and retry; `{login_command(host)}` may give a higher "
                                 "limit")
        return RegistryError(host, f"registry {host} answered HTTP {status} to the {what} "
                             f"request for {ref}{because}",
                             "retry; if it persists, look at the registry's logs")


def _capped(ref: Ref, response: requests.Response, limit: int, what: str, fix: str) -> bytes:
    """The body of a small answer, read no further than `limit` bytes: a registry that keeps
    sending is cut off, not held in memory."""
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(1 << 16):
            size += len(chunk)
            if size > limit:
                raise RegistryError(ref.registry, f"{what} of {ref} is more than the {limit}"
                                    " bytes it may have", fix)
            chunks.append(chunk)
    except requests.RequestException as error:
        raise _unreachable(ref.registry, response.url, error, 0) from None
    return b"".join(chunks)


class _CheckedBlob(io.RawIOBase):
    """A blob's bytes as served, hashed on the way: at the end, checked against its digest."""

    def __init__(self, ref: Ref, digest: str, hasher, response: requests.Response):
        self.ref, self.digest, self.hash, self.response = ref, digest, hasher, response
        self.checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self.response.raw.read(len(buffer), decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise _unreachable(self.ref.registry, self.response.url, error, 0) from None
        if not data:
            if not self.checked:
                self.checked = True
                _check(self.ref, self.digest, self.hash.hexdigest(), "blob")
            return 0
        self.hash.update(data)
        buffer[:len(data)] = data
        return len(data)


# The digests the OCI spec registers, each algorithm with its length in hex digits.
DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}")


def _hasher(ref: Ref, digest: str):
    """A hash to check `digest` with; RegistryError when it is not a digest we can check."""
    if not DIGEST.fullmatch(digest):
        raise RegistryError(ref.registry, f"{digest!r} in {ref.registry}/{ref.repository} is "
                            "not a sha256, sha384 or sha512 digest that archfarm can check",
                            "name the image by a tag, or by its sha256 digest")
    return hashlib.new(digest.partition(":")[0])


def _verify(ref: Ref, digest: str, content: bytes, what: str) -> None:
    hasher = _hasher(ref, digest)
    hasher.update(content)
    _check(ref, digest, hasher.hexdigest(), what)


def _check(ref: Ref, digest: str, hexdigest: str, what: str) -> None:
    algorithm, _, expected = digest.partition(":")
    if hexdigest != expected.lower():
        raise RegistryError(ref.registry, f"registry {ref.registry} served a {what} for "
                            f"{digest} of {ref.repository} whose content is "
                            f"{algorithm}:{hexdigest}",
                            f"retry; if it persists, {ref.registry}'s storage is damaged: push "
                            "the image again")


def _next_page(response: requests.Response, base: str) -> str | None:
    """The next page of a paginated list (RFC 5988 Link, rel="next"), if it stays on the
    same registry: the request carries its Authorization header."""
    link = response.links.get("next", {}).get("url")
    if not link:
        return None
    url = urljoin(response.url, link)
    same = urlsplit(url)[:2] == urlsplit(base)[:2]
    return url if same else None


def _error_text(response: requests.Response) -> str:
    """A registry's error body, `CODE: message; ...` (empty when it has none)."""
    try:
        errors = json.loads(response.content[:65536]).get("errors")
    except (ValueError, AttributeError, requests.RequestException, urllib3.exceptions.HTTPError):
        return ""
    if not isinstance(errors, list):
        return ""
    return "; ".join(f"{e.get('code', '?')}: {e.get('message', '')}".strip(": ")
                     for e in errors if isinstance(e, dict))


def _unreachable(registry: str, url: str, error: Exception, timeout: float) -> Unreachable:
    where = urlsplit(url).netloc
    text = str(error)
    fix = ("check the registry's name in the image reference, that the registry runs, and the "
           "network to it (proxy, firewall)")
    if isinstance(error, requests.exceptions.SSLError):
        cause = "TLS failed (its certificate is not trusted, or it does not speak https)"
        fix = (f"check {where}'s certificate; a private CA can be given in REQUESTS_CA_BUNDLE "
               "(only loopback registries are read over plain http)")
    elif isinstance(error, requests.Timeout | urllib3.exceptions.TimeoutError):
        cause = f"no answer within {timeout:g} s" if timeout else "it stopped answering"
    elif "refused" in text.lower():
        cause = "the connection was refused"
    elif "resolve" in text.lower() or "name or service not known" in text.lower():
        cause = "its name does not resolve"
    elif isinstance(error, requests.ConnectionError):
        cause = "the connection failed"
    else:
        cause = f"the answer broke off ({type(error).__name__})"
    return Unreachable(registry, f"registry {registry} cannot be reached at {where}: {cause}",
                       fix)


# --- the docker config -----------------------------------------------------------------------

def _shown(path: Path) -> str:
    """A path as a user would write it (~ for the home directory)."""
    try:
        return f"~/{path.relative_to(Path.home())}"
    except ValueError:
        return str(path)


def _hostname(server: str) -> str:
    """A docker config key reduced to its host, as docker matches them
    (`https://index.docker.io/v1/` -> `index.docker.io`)."""
    return server.removeprefix("https://").removeprefix("http://").partition("/")[0]


def _read_docker_config(path: Path) -> dict:
    """The docker config as JSON ({} when there is none); UserError when it is malformed."""
    def bad(problem: str) -> UserError:
        return UserError(f"{path}: {problem}. Fix: repair it (or move it away and "
                         "`docker login` again).")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise bad(f"the docker config cannot be read ({error})") from None
    try:
        config = json.loads(text) if text.strip() else {}
    except ValueError as error:
        raise bad(f"the docker config is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise bad("the docker config is not a JSON object")
    for key in ("auths", "credHelpers"):
        entries = config.get(key)
        if entries is not None and not isinstance(entries, dict):
            raise bad(f"`{key}` is not an object")
        if key == "credHelpers" and not all(isinstance(v, str) for v in (entries or {}).values()):
            raise bad("a `credHelpers` entry is not the name of a helper")
    if config.get("credsStore") is not None and not isinstance(config["credsStore"], str):
        raise bad("`credsStore` is not the name of a helper")
    return config


def _auths_of(config: dict, path: Path) -> dict[str, Credentials]:
    """The credentials stored in `auths`, by server key (entries without any left out)."""
    found: dict[str, Credentials] = {}
    for server, entry in (config.get("auths") or {}).items():
        if not isinstance(entry, dict):
            raise UserError(f"{path}: auths[{server!r}] is not an object. Fix: repair it, or "
                            f"`docker logout {server}` and `docker login {server}` again.")
        source = _shown(path)
        if entry.get("identitytoken"):
            found[server] = Credentials("<token>", str(entry["identitytoken"]), source, True)
        elif entry.get("auth"):
            try:
                pair = base64.b64decode(str(entry["auth"]), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                pair = ""
            username, colon, password = pair.partition(":")
            if not colon:
                raise UserError(f"{path}: auths[{server!r}].auth is not base64 of "
                                f"user:password. Fix: `docker login {server}` again.")
            found[server] = Credentials(username, password, source)
        elif entry.get("username") and entry.get("password"):
            found[server] = Credentials(str(entry["username"]), str(entry["password"]), source)
    return found
