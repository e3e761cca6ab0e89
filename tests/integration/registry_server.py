"""Registries on loopback for the tests of provision/armcheck/registry.py.

`DockerRegistry`: a real Debian `docker-registry` process (filesystem storage, optionally
htpasswd Basic auth), started on a free 127.0.0.1 port and stopped by its PID; `push_blob` and
`push_manifest` put content into it with the plain v2 API (monolithic upload).

`FakeRegistry`: what docker-registry cannot do without a signing certificate or a storage
driver that redirects: Bearer-token auth (its token realm is /token on itself), tags served a
few per page with a Link header, blob GETs redirected to a `BlobStore` on another port. Both
record the requests they get, headers included.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_docker_registry() -> None:
    """Debian's docker-registry, installed as the lab installs it (root on Debian: CI) when
    missing; elsewhere the test is skipped, saying so."""
    if shutil.which("docker-registry"):
        return
    if os.geteuid() != 0 or not Path("/etc/debian_version").exists():
        pytest.skip("needs Debian's docker-registry: `apt-get install docker-registry`, or run"
                    " the suite as root on Debian (CI), which installs it")
    from provision.lab.control import host_setup

    host_setup(print)


class DockerRegistry:
    """docker-registry serving `root` on 127.0.0.1 (with Basic auth when htpasswd is given)."""

    def __init__(self, root: Path, htpasswd: Path | None = None):
        need_docker_registry()
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.images: dict = {}  # what a test pushed, for it to compare with
        auth = (f"auth:\n  htpasswd: {{realm: archfarm-test, path: {htpasswd}}}\n"
                if htpasswd else "")
        config = root / "registry.yml"
        config.write_text(f"""version: 0.1
log: {{level: error}}
storage:
  filesystem: {{rootdirectory: {root / 'storage'}}}
http:
  addr: {self.host}
  secret: archfarm-test
{auth}""")
        self.log = open(root / "registry.log", "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(["docker-registry", "serve", str(config)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                requests.get(f"{self.url}/v2/", timeout=1)
                break
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"docker-registry did not start: "
                                       f"{(root / 'registry.log').read_text()}") from None
                time.sleep(0.05)

    @classmethod
    def with_password(cls, root: Path, user: str, password: str) -> DockerRegistry:
        """A registry that wants `user`/`password` (htpasswd Basic auth, bcrypt)."""
        import bcrypt

        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        (root / "htpasswd").write_text(f"{user}:{hashed}\n")
        return cls(root, htpasswd=root / "htpasswd")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # our own process, by its PID
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def push_blob(url: str, repository: str, data: bytes, auth=None) -> str:
    """A monolithic upload: POST an upload, PUT the bytes with their digest."""
    digest = digest_of(data)
    started = requests.post(f"{url}/v2/{repository}/blobs/uploads/", auth=auth, timeout=10)
    started.raise_for_status()
    location = started.headers["Location"]
    location = location if location.startswith("http") else url + location
    separator = "&" if "?" in location else "?"
    done = requests.put(f"{location}{separator}digest={digest}", data=data, auth=auth,
                        headers={"Content-Type": "application/octet-stream"}, timeout=10)
    done.raise_for_status()
    return digest


def push_manifest(url: str, repository: str, tag: str, manifest: dict, auth=None) -> str:
    body = json.dumps(manifest).encode()
    done = requests.put(f"{url}/v2/{repository}/manifests/{tag}", data=body, auth=auth,
                        headers={"Content-Type": manifest["mediaType"]}, timeout=10)
    done.raise_for_status()
    return digest_of(body)


@dataclass
class Seen:
    """One request a fake server got."""

    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str] = field(default_factory=dict)  # a POSTed form


class _Server:
    """A threading http.server on a free loopback port, run in a daemon thread."""

    def __init__(self, handle):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                outer.seen.append(Seen("GET", self.path, dict(self.headers)))
                handle(self)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
                outer.seen.append(Seen("POST", self.path, dict(self.headers), form))
                handle(self)

            def log_message(self, *args):
                pass

        self.seen: list[Seen] = []
        ThreadingHTTPServer.request_queue_size = 64  # the tests' 20 threads connect at once
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
           headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


class BlobStore(_Server):
    """Blob storage a registry redirects to: serves /blobs/<digest>, records the headers."""

    def __init__(self):
        self.blobs: dict[str, bytes] = {}
        self.refuse: int | None = None  # a status to answer everything with (403: expired)
        super().__init__(self._handle)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        digest = urlsplit(handler.path).path.removeprefix("/blobs/")
        if self.refuse:
            answer(handler, self.refuse, b"<Error><Code>AccessDenied</Code></Error>")
        elif digest in self.blobs:
            answer(handler, 200, self.blobs[digest],
                   {"Content-Type": "application/octet-stream"})
        else:
            answer(handler, 404)


@dataclass
class FakeRegistry:
    """A v2 registry with Bearer-token auth (user/password at its /token realm)."""

    username: str = "alice"
    password: str = "wonderland"
    refresh_token: str = "refresh-me"        # an OAuth refresh token it takes too
    page: int = 2                            # tags per page at most
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    tag_lists: dict[str, list[str]] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)   # token -> scope
    busy: int = 0                            # the next `busy` requests answer 503

    def __post_init__(self):
        self.store = BlobStore()
        self.server = _Server(self._handle)
        self.host, self.url, self.seen = self.server.host, self.server.url, self.server.seen

    def stop(self) -> None:
        self.server.stop()
        self.store.stop()

    def add_manifest(self, repository: str, tag: str, manifest: dict) -> str:
        body = json.dumps(manifest).encode()
        digest = digest_of(body)
        for reference in (tag, digest):
            self.manifests[(repository, reference)] = (manifest["mediaType"], body)
        self.tag_lists.setdefault(repository, []).append(tag)
        return digest

    def add_blob(self, data: bytes) -> str:
        self.store.blobs[digest_of(data)] = data
        return digest_of(data)

    def token_requests(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.path.startswith("/token")]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        if url.path == "/token":
            return self._token(handler, query)
        if self.busy > 0:
            self.busy -= 1
            return answer(handler, 503, error_body("UNAVAILABLE", "busy"))
        match = re.fullmatch(r"/v2/(.+)/(manifests|blobs|tags)/([^/]+)", url.path)
        if match is None:
            return answer(handler, 404)
        repository, kind, reference = match.groups()
        scope = f"repository:{repository}:pull"
        token = handler.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.tokens.get(token) != scope:
            challenge = (f'Bearer realm="{self.url}/token",service="fake-registry",'
                         f'scope="{scope}"')
            return answer(handler, 401, error_body("UNAUTHORIZED", "authentication required"),
                          {"WWW-Authenticate": challenge})
        if kind == "manifests" and (repository, reference) in self.manifests:
            media_type, body = self.manifests[(repository, reference)]
            return answer(handler, 200, body, {"Content-Type": media_type,
                                               "Docker-Content-Digest": digest_of(body)})
        if kind == "blobs":
            return answer(handler, 307, headers={
                "Location": f"{self.store.url}/blobs/{reference}?signature=x"})
        if kind == "tags" and repository in self.tag_lists:
            return self._tags(handler, repository, query)
        answer(handler, 404, error_body("MANIFEST_UNKNOWN", "manifest unknown"))

    def _token(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        if handler.command == "POST":  # docker's OAuth form: a refresh token for a token
            query = self.seen[-1].form
            allowed = (query.get("grant_type") == "refresh_token"
                       and query.get("refresh_token") == self.refresh_token)
        else:
            allowed = handler.headers.get("Authorization") == f"Basic {expected}"
        if not allowed:
            return answer(handler, 401, b'{"details": "incorrect username or password"}')
        token = f"token-{len(self.tokens)}"
        self.tokens[token] = query.get("scope", "")
        answer(handler, 200, json.dumps({"token": token, "expires_in": 300}).encode(),
               {"Content-Type": "application/json"})

    def _tags(self, handler: BaseHTTPRequestHandler, repository: str,
              query: dict[str, str]) -> None:
        tags = sorted(self.tag_lists[repository])
        after = [tag for tag in tags if tag > query.get("last", "")]
        size = min(int(query.get("n", "100")), self.page)
        headers = {"Content-Type": "application/json"}
        if len(after) > size:
            headers["Link"] = (f'</v2/{repository}/tags/list?n={size}&last={after[size - 1]}>; '
                               'rel="next"')
        answer(handler, 200, json.dumps({"name": repository, "tags": after[:size]}).encode(),
               headers)
