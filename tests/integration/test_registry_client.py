"""The registry v2 client of `inv check-arm`, against a real docker-registry on loopback (plain
and with htpasswd Basic auth) and, for Bearer tokens, paginated tags and redirected blobs, a
small fake registry (tests/integration/registry_server.py)."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from provision.armcheck import registry
from provision.armcheck.registry import (
    CONFIG_MAX,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    Denied,
    NotFound,
    Ref,
    RegistryError,
    Unreachable,
)
from provision.errors import UserError

from .registry_server import (
    DockerRegistry,
    FakeRegistry,
    free_port,
    push_blob,
    push_manifest,
)

USER, PASSWORD = "alice", "s3cret-Pa55"


def layer_bytes() -> bytes:
    """A gzipped tar holding a 300 kB file: a layer as a registry stores it."""
    payload = os.urandom(300_000)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo("usr/bin/app")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return out.getvalue()


def push_image(url: str, repository: str, auth=None, *, docker_types=False) -> dict:
    """An arm64 and an amd64 image, and the index naming both, pushed to a registry."""
    manifest_type, index_type = ((DOCKER_MANIFEST, DOCKER_LIST) if docker_types
                                 else (OCI_MANIFEST, OCI_INDEX))
    layer = layer_bytes()
    layer_digest = push_blob(url, repository, layer, auth)
    pushed: dict = {"layer": layer, "layer_digest": layer_digest, "manifests": {}}
    entries = []
    for arch in ("arm64", "amd64"):
        config = json.dumps({"architecture": arch, "os": "linux",
                             "config": {"Entrypoint": ["/usr/bin/app"]},
                             "rootfs": {"type": "layers", "diff_ids": []}}).encode()
        manifest = {"schemaVersion": 2, "mediaType": manifest_type,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": push_blob(url, repository, config, auth),
                               "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": layer_digest, "size": len(layer)}]}
        digest = push_manifest(url, repository, arch, manifest, auth)
        pushed["manifests"][arch] = (digest, manifest)
        entries.append({"mediaType": manifest_type, "digest": digest,
                        "size": len(json.dumps(manifest)),
                        "platform": {"architecture": arch, "os": "linux"}})
    index = {"schemaVersion": 2, "mediaType": index_type, "manifests": entries}
    pushed["index_digest"] = push_manifest(url, repository, "1.0", index, auth)
    return pushed


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """A docker-registry without auth holding lab/multi (OCI) and lab/docker (Docker types)."""
    server = DockerRegistry(tmp_path_factory.mktemp("plain"))
    server.images = {"lab/multi": push_image(server.url, "lab/multi"),
                     "lab/docker": push_image(server.url, "lab/docker", docker_types=True)}
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A docker-registry with htpasswd Basic auth (USER, PASSWORD) holding lab/private."""
    server = DockerRegistry.with_password(tmp_path_factory.mktemp("private"), USER, PASSWORD)
    server.images = {"lab/private": push_image(server.url, "lab/private", auth=(USER, PASSWORD))}
    yield server
    server.stop()


@pytest.fixture
def fake():
    server = FakeRegistry(username=USER, password=PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def client():
    with_client = Client()  # DOCKER_CONFIG points into tmp_path (conftest): no credentials
    yield with_client
    with_client.close()


def docker_config(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(config))
    return path


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


# --- references and addresses (no network) -----------------------------------------------

def test_references_read_as_docker_reads_them():
    assert Ref.parse("nginx") == Ref("docker.io", "library/nginx", "latest", None)
    ref = Ref.parse("127.0.0.1:5000/lab/app@sha256:" + "a" * 64)
    assert (ref.tag, ref.reference) == (None, "sha256:" + "a" * 64)
    assert str(ref.at("2.0")) == "127.0.0.1:5000/lab/app:2.0"
    assert ref.at("sha256:" + "b" * 64).digest == "sha256:" + "b" * 64
    assert str(Ref.parse("ghcr.io/o/app:1")) == "ghcr.io/o/app:1"
    with pytest.raises(ValueError, match="lowercase"):
        Ref.parse("127.0.0.1:5000/Lab/App")


@pytest.mark.parametrize(("host", "url"), [
    ("docker.io", "https://registry-1.docker.io"),
    ("ghcr.io", "https://ghcr.io"),
    ("registry.example:5000", "https://registry.example:5000"),
    ("127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("127.4.5.6", "http://127.4.5.6"),
    ("localhost:5000", "http://localhost:5000"),
    ("localhost", "http://localhost"),
    ("[::1]:5000", "http://[::1]:5000"),
])
def test_plain_http_only_for_loopback_registries(host, url):
    assert registry.base_url(host) == url


def test_docker_hub_credentials_are_read_under_its_v1_key(tmp_path):
    docker_config(tmp_path, {"auths": {"https://index.docker.io/v1/": {
        "auth": basic("hubuser", "hubpass")}}})
    credentials = Client()._credentials_for("docker.io")
    assert credentials is not None
    assert (credentials.username, credentials.secret) == ("hubuser", "hubpass")


def test_a_malformed_docker_config_is_bad_input_naming_the_file(tmp_path):
    path = docker_config(tmp_path, {})
    path.write_text("{not json")
    with pytest.raises(UserError, match=f"{path}: the docker config is not valid JSON"):
        Client()
    path.write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": "%%%"}}}))
    with pytest.raises(UserError, match="not base64 of user:password"):
        Client()


# --- a registry without auth -------------------------------------------------------------

def test_an_index_and_its_manifests_by_tag_and_by_digest(plain, client):
    pushed = plain.images["lab/multi"]
    index = client.manifest(Ref.parse(f"{plain.host}/lab/multi:1.0"))
    assert index.is_index and index.media_type == OCI_INDEX
    assert index.digest == pushed["index_digest"]
    platforms = {m["platform"]["architecture"]: m["digest"] for m in index.body["manifests"]}
    assert platforms == {arch: d for arch, (d, _) in pushed["manifests"].items()}

    again = client.manifest(Ref.parse(f"{plain.host}/lab/multi@{index.digest}"))
    assert again == index
    arm64 = client.manifest(Ref.parse(f"{plain.host}/lab/multi").at(platforms["arm64"]))
    assert not arm64.is_index and arm64.media_type == OCI_MANIFEST
    assert arm64.body == pushed["manifests"]["arm64"][1]
    by_tag = client.manifest(Ref.parse(f"{plain.host}/lab/multi:arm64"))
    assert by_tag.digest == platforms["arm64"]


def test_docker_manifest_lists_are_read_too(plain, client):
    ref = Ref.parse(f"{plain.host}/lab/docker:1.0")
    listed = client.manifest(ref)
    assert listed.is_index and listed.media_type == DOCKER_LIST
    arm64 = client.manifest(ref.at(listed.body["manifests"][0]["digest"]))
    assert arm64.media_type == DOCKER_MANIFEST and not arm64.is_index


def test_blob_is_verified_and_open_blob_streams_the_layer_as_stored(plain, client):
    pushed = plain.images["lab/multi"]
    ref = Ref.parse(f"{plain.host}/lab/multi:arm64")
    manifest = pushed["manifests"]["arm64"][1]
    config = json.loads(client.blob(ref, manifest["config"]["digest"]))
    assert config["architecture"] == "arm64"

    with client.open_blob(ref, pushed["layer_digest"]) as stream:
        first = stream.read(2)
        assert first == b"\x1f\x8b"  # still gzip: the blob's own bytes
        rest = stream.read()
    assert first + rest == pushed["layer"]
    with client.open_blob(ref, pushed["layer_digest"]) as stream, \
            tarfile.open(fileobj=stream, mode="r|gz") as tar:
        assert [member.name for member in tar] == ["usr/bin/app"]


def test_tags_of_a_repository(plain, client):
    tags = client.tags(Ref.parse(f"{plain.host}/lab/multi"))
    assert sorted(tags) == ["1.0", "amd64", "arm64"]
    assert len(client.tags(Ref.parse(f"{plain.host}/lab/multi"), limit=2)) == 2


def test_unknown_tag_repository_and_blob_are_not_found(plain, client):
    with pytest.raises(NotFound) as unknown_tag:
        client.manifest(Ref.parse(f"{plain.host}/lab/multi:9.9"))
    assert str(unknown_tag.value).startswith(
        f"registry {plain.host} has no manifest for tag 9.9 in lab/multi "
        "(MANIFEST_UNKNOWN: manifest unknown). Fix: ")
    assert unknown_tag.value.registry == plain.host

    with pytest.raises(NotFound, match="has no manifest for tag latest in lab/nothing"):
        client.manifest(Ref.parse(f"{plain.host}/lab/nothing"))
    with pytest.raises(NotFound, match="has no repository lab/nothing .NAME_UNKNOWN"):
        client.tags(Ref.parse(f"{plain.host}/lab/nothing"))
    with pytest.raises(NotFound, match="has no blob sha256:0{64} in lab/multi .BLOB_UNKNOWN"):
        client.blob(Ref.parse(f"{plain.host}/lab/multi"), "sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match="'sha256:../x' in .* is not a sha256, sha384"):
        client.blob(Ref.parse(f"{plain.host}/lab/multi"), "sha256:../x")


def test_an_unreachable_registry_is_reported_at_once(client):
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(Unreachable) as lost:
        client.manifest(Ref.parse(f"{host}/lab/app:1"))
    assert time.monotonic() - started < 3
    assert str(lost.value).startswith(
        f"registry {host} cannot be reached at {host}: the connection was refused. Fix: ")


def test_threads_share_one_client(plain, client):
    refs = [Ref.parse(f"{plain.host}/lab/{repo}:{tag}")
            for repo in ("multi", "docker") for tag in ("1.0", "arm64", "amd64")] * 4
    with ThreadPoolExecutor(20) as pool:
        manifests = list(pool.map(client.manifest, refs))
    assert [m.is_index for m in manifests] == [ref.tag == "1.0" for ref in refs]


# --- Basic auth (docker-registry's htpasswd) ----------------------------------------------

def test_basic_auth_with_credentials_of_the_docker_config(private, tmp_path):
    ref = Ref.parse(f"{private.host}/lab/private:1.0")
    for entry in ({"auth": basic(USER, PASSWORD)}, {"username": USER, "password": PASSWORD}):
        docker_config(tmp_path, {"auths": {f"http://{private.host}": entry}})
        client = Client()
        assert client.manifest(ref).digest == private.images["lab/private"]["index_digest"]
        assert sorted(client.tags(ref)) == ["1.0", "amd64", "arm64"]
        client.close()


def test_anonymous_access_to_a_private_registry_is_denied(private, client):
    with pytest.raises(Denied) as denied:
        client.manifest(Ref.parse(f"{private.host}/lab/private:1.0"))
    assert str(denied.value) == (
        f"registry {private.host} refuses access to lab/private anonymously (or the "
        f"repository does not exist). Fix: `docker login {private.host}` with an account that "
        "may pull lab/private, and check the image's name.")


def test_wrong_credentials_are_denied_without_the_password(private, tmp_path):
    path = docker_config(tmp_path, {"auths": {private.host: {
        "auth": basic(USER, "wrong-Secret-42")}}})
    with pytest.raises(Denied) as denied:
        Client(docker_config=path).manifest(Ref.parse(f"{private.host}/lab/private:1.0"))
    message = str(denied.value)
    assert "wrong-Secret-42" not in message and basic(USER, "wrong-Secret-42") not in message
    assert f"with the credentials of {path} (user {USER})" in message
    assert f"Fix: `docker login {private.host}`" in message


HELPER = """#!/bin/sh
# A docker credential helper knowing one server; logs each call.
read server
echo "$server" >> {log}
if [ "$1" = get ] && [ "$server" = "{server}" ]; then
  echo '{{"ServerURL": "{server}", "Username": "{user}", "Secret": "{password}"}}'
else
  echo "credentials not found in native keychain"; exit 1
fi
"""


@pytest.fixture
def helper(tmp_path, monkeypatch):
    """Installs `docker-credential-test` on PATH, holding USER/PASSWORD for one server; returns
    the log of the servers it was asked for."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    log = tmp_path / "helper.log"

    def install(server: str) -> Path:
        script = bin_dir / "docker-credential-test"
        script.write_text(HELPER.format(log=log, server=server, user=USER, password=PASSWORD))
        script.chmod(0o755)
        return log
    return install


@pytest.mark.parametrize("where", ["credHelpers", "credsStore"])
def test_credentials_from_a_helper_looked_up_once(private, helper, tmp_path, where):
    log = helper(private.host)
    docker_config(tmp_path, {"credHelpers": {private.host: "test"}} if where == "credHelpers"
                  else {"credsStore": "test"})
    client = Client()
    refs = [Ref.parse(f"{private.host}/lab/private:{tag}") for tag in ("1.0", "arm64")] * 5
    with ThreadPoolExecutor(10) as pool:
        assert all(m.body for m in pool.map(client.manifest, refs))
    assert log.read_text().split() == [private.host]  # asked once, for this server


def test_a_helper_without_credentials_means_anonymous(private, helper, tmp_path):
    log = helper("registry.example")  # it knows another registry only
    docker_config(tmp_path, {"credsStore": "test"})
    with pytest.raises(Denied, match="refuses access to lab/private anonymously"):
        Client().manifest(Ref.parse(f"{private.host}/lab/private:1.0"))
    assert log.read_text().split() == [private.host]


def test_a_missing_helper_is_a_clear_error(private, tmp_path):
    path = docker_config(tmp_path, {"credsStore": "nowhere"})
    with pytest.raises(RegistryError) as missing:
        Client().manifest(Ref.parse(f"{private.host}/lab/private:1.0"))
    assert str(missing.value).startswith(
        f"the docker config {path} has the credential helper docker-credential-nowhere give "
        f"the credentials for {private.host} (credsStore), and it cannot run")
    assert "Fix: install docker-credential-nowhere on PATH, or remove the credsStore" in str(
        missing.value)


# --- Bearer tokens, pages of tags, redirected blobs (the fake registry) -------------------

def test_a_bearer_token_is_fetched_with_the_credentials_and_reused(fake, tmp_path):
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}
    digest = fake.add_manifest("lab/app", "1.0", manifest)
    docker_config(tmp_path, {"auths": {fake.host: {"auth": basic(USER, PASSWORD)}}})
    client = Client()
    ref = Ref.parse(f"{fake.host}/lab/app:1.0")
    assert client.manifest(ref).digest == digest
    assert client.manifest(ref.at(digest)).body == manifest

    tokens = fake.token_requests()
    assert len(tokens) == 1
    assert "scope=repository%3Alab%2Fapp%3Apull" in tokens[0].path
    assert "service=fake-registry" in tokens[0].path
    assert tokens[0].headers["Authorization"] == f"Basic {basic(USER, PASSWORD)}"
    registry_requests = [seen for seen in fake.seen if seen.path.startswith("/v2/")]
    # the first is challenged; the retry and the second read carry the token
    assert [("Authorization" in seen.headers) for seen in registry_requests] == [
        False, True, True]


def test_an_identity_token_is_traded_for_a_bearer_token(fake, tmp_path):
    digest = fake.add_manifest("lab/app", "1.0", {"schemaVersion": 2, "mediaType": OCI_MANIFEST})
    docker_config(tmp_path, {"auths": {fake.host: {"identitytoken": fake.refresh_token}}})
    assert Client().manifest(Ref.parse(f"{fake.host}/lab/app:1.0")).digest == digest
    [asked] = fake.token_requests()
    assert asked.method == "POST"
    assert asked.form["scope"] == "repository:lab/app:pull"
    assert asked.form["service"] == "fake-registry"


def test_a_token_service_refusing_the_credentials_is_denied(fake, tmp_path):
    fake.add_manifest("lab/app", "1.0", {"schemaVersion": 2, "mediaType": OCI_MANIFEST})
    path = docker_config(tmp_path, {"auths": {fake.host: {"auth": basic(USER, "nope-123")}}})
    with pytest.raises(Denied, match=f"with the credentials of {path} .user {USER}.") as denied:
        Client().manifest(Ref.parse(f"{fake.host}/lab/app:1.0"))
    assert "nope-123" not in str(denied.value)


def test_tags_across_pages(fake, tmp_path):
    for tag in ("a", "b", "c", "d", "e"):
        fake.add_manifest("lab/app", tag, {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                           "tag": tag})
    docker_config(tmp_path, {"auths": {fake.host: {"auth": basic(USER, PASSWORD)}}})
    client = Client()
    ref = Ref.parse(f"{fake.host}/lab/app")
    assert client.tags(ref) == ["a", "b", "c", "d", "e"]
    pages = [seen.path for seen in fake.seen if "/tags/list" in seen.path
             and "Authorization" in seen.headers]
    assert pages == ["/v2/lab/app/tags/list?n=1000", "/v2/lab/app/tags/list?n=2&last=b",
                     "/v2/lab/app/tags/list?n=2&last=d"]
    assert client.tags(ref, limit=3) == ["a", "b", "c"]


def test_a_redirected_blob_does_not_get_the_authorization_header(fake, tmp_path):
    config = json.dumps({"architecture": "arm64", "os": "linux"}).encode()
    layer = layer_bytes()
    config_digest, layer_digest = fake.add_blob(config), fake.add_blob(layer)
    docker_config(tmp_path, {"auths": {fake.host: {"auth": basic(USER, PASSWORD)}}})
    client = Client()
    ref = Ref.parse(f"{fake.host}/lab/app:1.0")
    assert client.blob(ref, config_digest) == config
    with client.open_blob(ref, layer_digest) as stream:
        assert stream.read() == layer

    asked = [seen for seen in fake.seen if "/blobs/" in seen.path]
    assert asked and all(seen.headers["Authorization"].startswith("Bearer ")
                         for seen in asked[1:])
    stored = fake.store.seen
    assert [seen.path.partition("?")[0] for seen in stored] == [
        f"/blobs/{config_digest}", f"/blobs/{layer_digest}"]
    assert not any("Authorization" in seen.headers for seen in stored)


@pytest.mark.parametrize("status", [404, 403])
def test_a_refusal_of_blob_storage_names_the_storage_not_its_signed_url(fake, tmp_path, status):
    """What the storage a registry redirects to answers is not about our credentials (a 403 is
    an expired signature), and its URL's query (the signature) is never shown."""
    digest = fake.add_blob(b"{}")
    if status == 403:
        fake.store.refuse = 403
    else:
        fake.store.blobs.clear()
    docker_config(tmp_path, {"auths": {fake.host: {"auth": basic(USER, PASSWORD)}}})
    with pytest.raises(RegistryError) as raised:
        Client().blob(Ref.parse(f"{fake.host}/lab/app:1.0"), digest)
    message = str(raised.value)
    assert f"HTTP {status} for blob {digest}" in message and "storage" in message, message
    assert "signature" not in message and "docker login" not in message, message


def test_content_that_differs_from_its_digest_is_refused(fake, tmp_path):
    good = fake.add_blob(b"the real content")
    fake.store.blobs[good] = b"something else"
    digest = fake.add_manifest("lab/app", "1.0", {"schemaVersion": 2, "mediaType": OCI_MANIFEST})
    fake.manifests[("lab/app", digest)] = (OCI_MANIFEST, b'{"schemaVersion": 2}')
    docker_config(tmp_path, {"auths": {fake.host: {"auth": basic(USER, PASSWORD)}}})
    client = Client()
    ref = Ref.parse(f"{fake.host}/lab/app:1.0")
    with pytest.raises(RegistryError, match=f"served a manifest for {digest} of lab/app whose "):
        client.manifest(ref.at(digest))
    with pytest.raises(RegistryError, match=f"served a blob for {good} of lab/app whose "):
        client.blob(ref, good)
    with pytest.raises(RegistryError, match="storage is damaged"), \
            client.open_blob(ref, good) as stream:
        stream.read()


def test_a_busy_registry_is_retried(fake, tmp_path):
    digest = fake.add_manifest("lab/app", "1.0", {"schemaVersion": 2, "mediaType": OCI_MANIFEST})
    docker_config(tmp_path, {"auths": {fake.host: {"auth": basic(USER, PASSWORD)}}})
    fake.busy = 2
    assert Client().manifest(Ref.parse(f"{fake.host}/lab/app:1.0")).digest == digest
    fake.busy = 3
    with pytest.raises(RegistryError, match="answered HTTP 503 .* .UNAVAILABLE: busy."):
        Client().manifest(Ref.parse(f"{fake.host}/lab/app:1.0"))


def test_threads_fetch_tokens_safely(fake, tmp_path):
    digests = {tag: fake.add_manifest(f"lab/app{tag}", tag, {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "n": tag}) for tag in "0123456789"}
    docker_config(tmp_path, {"auths": {fake.host: {"auth": basic(USER, PASSWORD)}}})
    client = Client()
    refs = [Ref.parse(f"{fake.host}/lab/app{tag}:{tag}") for tag in digests] * 3
    with ThreadPoolExecutor(20) as pool:
        got = list(pool.map(client.manifest, refs))
    assert [m.digest for m in got] == [digests[str(ref.tag)] for ref in refs]


def test_a_config_bigger_than_any_image_config_is_refused_not_held_in_memory(plain, client):
    """blob() is for image configs: a registry that sends more than CONFIG_MAX bytes is cut
    off (an endless answer would otherwise fill the memory)."""
    digest = push_blob(plain.url, "lab/multi", bytes(CONFIG_MAX + 1))
    with pytest.raises(RegistryError, match="more than the .* bytes it may have"):
        client.blob(Ref.parse(f"{plain.host}/lab/multi:1.0"), digest)
