"""Bad input, through the real CLI: exit 2 and one message naming the file (or flag) and key with
a fix; no request reaches Compute Engine; no traceback; no file changed; no VM made.

Each case counts in the "bad inputs" tally printed at the end of the run (conftest): tried, how
many ended cleanly with exit 2, and the tracebacks seen.
"""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ed25519, rsa

from provision.cloud.tasks import destroy as destroy_task
from provision.cloud.tasks import vms as vms_task
from provision.status import status as status_task

from .conftest import LAB_LIKE, count_tracebacks, inv, run_vms

pytestmark = pytest.mark.tally("bad_input")


@pytest.fixture(autouse=True)
def sandbox(tmp_path, monkeypatch):
    """HOME and the working directory inside tmp_path: a key archfarm wrongly falls back to or
    makes (~/.ssh/archfarm-t, a relative path) lands where the snapshot sees it."""
    for name in ("ARCHFARM_INVENTORY", "ARCHFARM_GCE_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path / "cwd")


# -- helpers -------------------------------------------------------------------------------------

def snapshot(root: Path) -> dict:
    """Every file, directory and link under root: type, mode, and content / target / mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            entry: tuple = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
            if stat.S_ISLNK(st.st_mode):
                entry += (os.readlink(path),)
            elif stat.S_ISREG(st.st_mode):
                entry += (path.read_bytes(), st.st_mtime_ns)
            out[str(path.relative_to(root))] = entry
    return out


def exits_2(fn, *, capsys, fake, record_property, mentions, root: Path | None = None,
            no_requests: bool = True, **flags) -> str:
    """Run a task with --json; assert a clean exit 2; return the error message."""
    before = snapshot(root) if root else None
    capsys.readouterr()
    code = fn(**flags, json_mode=True)
    captured = capsys.readouterr()
    record_property("exit", code)
    record_property("tracebacks", count_tracebacks(captured.err))
    assert "Traceback" not in captured.err, captured.err
    assert code == 2, captured.out + captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 1, f"stdout must hold only the JSON object: {captured.out!r}"
    result = json.loads(lines[0])
    assert set(result) == {"error"}, result
    message = result["error"]
    assert "Fix:" in message, message
    assert any(m in message for m in mentions), (mentions, message)
    assert "error:" in captured.err, captured.err
    if no_requests:
        assert fake.requests() == [], fake.requests()
    if root is not None:
        assert snapshot(root) == before, "a file was created, changed or removed"
    return message


def text_of(template: str, endpoint: str, key) -> str:
    return template.replace("{endpoint}", endpoint).replace("{key}", str(key))


def sub(*pairs: tuple[str, str], text: str = LAB_LIKE) -> str:
    """LAB_LIKE with each `old` (which must be there) replaced by `new`."""
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


ARM_END = "    machine_type: t2a-standard-2\n"
GCP_END = "  ssh_source_ranges: [127.0.0.1/32]\n"
RANGES = "[127.0.0.1/32]"
ZONES = "[us-central1-a, us-central1-b, us-central1-f]"


def arm(extra: str) -> str:
    """The first node (arm) with extra `key: value` lines."""
    return sub((ARM_END, ARM_END + "".join(f"    {line}\n" for line in extra.split("\n"))))


def gcp(extra: str) -> str:
    return sub((GCP_END, GCP_END + f"  {extra}\n"))


def ranges(value: str) -> str:
    return sub((RANGES, value))


ALIAS_BOMB = sub(("farm: t\n", """farm: t
x1: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
x2: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
x3: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
x4: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
x5: [*d, *d, *d, *d, *d, *d, *d, *d, *d]
"""))

# id -> (inventory text (str) or bytes, what the message must say)
INVENTORIES: dict[str, tuple[str | bytes, str]] = {
    # YAML itself
    "not valid YAML": ("farm: t\ngcp: [unclosed\n", "not valid YAML"),
    "tab indentation": (sub(("  project:", "\tproject:")), "not valid YAML"),
    "two documents": (LAB_LIKE + "---\nfarm: u\n", "more than one YAML document"),
    "duplicate key": (sub(("farm: t\n", "farm: t\nfarm: u\n")),
                      "farm: key farm appears twice, on lines"),
    "duplicate nested key": (gcp("project: other-project"), "gcp.project: key project appears"),
    "YAML alias bomb": (ALIAS_BOMB, "YAML anchor &a is not accepted"),
    "anchor": (sub(("project: test-project", "project: &p test-project")),
               "gcp.project: YAML anchor &p is not accepted"),
    "merge key": (sub(("nodes:\n", "base: &b {platform: linux/arm64}\nnodes:\n")),
                  "YAML anchor &b is not accepted"),
    "python tag": (sub(("farm: t", "farm: !!python/object/apply:os.system [true]")),
                   "not valid YAML"),
    "int tag on junk": (arm("count: !!int three"), "cannot read 'three' as"),
    "a list as a key": (sub(("farm: t\n", "farm: t\n? [a, b]\n: c\n")),
                        "a key here is a list or a mapping"),
    "nested 40 deep": ("farm: t\nx: " + "[" * 40 + "]" * 40 + "\n",
                       "nested more than 32 levels deep"),
    "NUL byte": ("farm: t\x00\n", "is not allowed"),
    "binary junk": (bytes(range(256)) * 8, "not UTF-8 text"),
    "empty file": ("", "the inventory must be a mapping"),
    "only comments": ("# nothing here\n", "the inventory must be a mapping"),
    "top level list": ("- farm: t\n", "the inventory must be a mapping"),
    "top level scalar": ("farm\n", "the inventory must be a mapping"),
    "too big": ("farm: t\n" + "# padding\n" * 110_000, "too big for an inventory"),
    # the top level
    "unknown top-level key": (sub(("farm: t\n", "farm: t\ncolour: red\n")),
                              "unknown key colour"),
    "typo nodes": (sub(("nodes:", "node:")), "unknown key node; did you mean nodes?"),
    "yes as a key": (sub(("farm: t\n", "farm: t\nyes: 1\n")), "unknown key yes"),
    "farm missing": (sub(("farm: t\n", "")), "farm: required key is missing"),
    "farm not text": (sub(("farm: t", "farm: 42")), "farm: expected text, got 42"),
    "farm uppercase": (sub(("farm: t", "farm: Bad_Farm")), "farm: 'Bad_Farm'"),
    "farm too long": (sub(("farm: t", "farm: " + "a" * 21)), "does not match"),
    "farm empty": (sub(("farm: t", 'farm: ""')), "farm: '' does not match"),
    "farm lookalike letter": (sub(("farm: t", "farm: t\u0435st")), "does not match"),
    "farm huge": (sub(("farm: t", "farm: " + "a" * 10_000)), "..."),
    # gcp
    "gcp missing": (sub(("gcp:\n", "gcpx:\n")), "unknown key gcpx; did you mean gcp?"),
    "gcp a string": ("farm: t\ngcp: test-project\nnodes: []\n", "gcp: expected a mapping"),
    "project missing": (sub(("  project: test-project\n", "")),
                        "gcp.project: required key is missing"),
    "project too short": (sub(("project: test-project", "project: ab")), "gcp.project"),
    "project a number": (sub(("project: test-project", "project: 123456")),
                         "gcp.project: expected text"),
    "typo zone": (sub(("  zones:", "  zone:")), "gcp.zone: unknown key zone; did you mean zones?"),
    "zones empty": (sub((ZONES, "[]")), "gcp.zones: the list is empty"),
    "zones a string": (sub((ZONES, "us-central1-a")), "gcp.zones: expected a list"),
    "zone malformed": (sub((ZONES, "[uscentral1a]")), "gcp.zones[0]"),
    "no T2A zone": (sub((ZONES, "[us-central1-c, us-east1-b]")),
                    "gcp.zones: none of us-central1-c, us-east1-b offers T2A"),
    "api_endpoint a number": (sub(("api_endpoint: {endpoint}", "api_endpoint: 8089")),
                              "gcp.api_endpoint: expected text"),
    "api_endpoint not a URL": (sub(("api_endpoint: {endpoint}", "api_endpoint: ftp://x")),
                               "gcp.api_endpoint: 'ftp://x' is not a URL"),
    "plain http off loopback": (sub(("{endpoint}", "http://example.invalid:8089")),
                                "plain http"),
    "network a list": (gcp("network: [default]"), "gcp.network: expected text"),
    "allow_ssh quoted": (gcp('allow_ssh_from_anywhere: "true"'),
                         "gcp.allow_ssh_from_anywhere: expected true or false, got the quoted"),
    "allow_ssh a number": (gcp("allow_ssh_from_anywhere: 1"),
                           "gcp.allow_ssh_from_anywhere: expected true or false"),
    "ranges a string": (ranges("127.0.0.1/32"), "gcp.ssh_source_ranges: expected a list"),
    "range not CIDR": (ranges("[localhost]"), "is not a CIDR range"),
    "range host bits": (ranges("[10.0.0.1/8]"), "10.0.0.1/8 has host bits set"),
    "range v6 host bits": (ranges("['2001:db8::1/64']"), "has host bits set"),
    "range whole internet": (ranges("[0.0.0.0/0]"), "to the whole internet"),
    "range v6 whole internet": (ranges("['::/0']"), "to the whole internet"),
    "range wider than /8": (ranges("[10.0.0.0/7]"), "wider than a /8"),
    "range v6 wider than /32": (ranges("['2001:db8::/31']"), "wider than a /32"),
    "range 0/0 with allow quoted": (gcp('allow_ssh_from_anywhere: "yes"').replace(
        RANGES, "[0.0.0.0/0]"), "gcp.allow_ssh_from_anywhere"),
    # ssh and docker
    "ssh a string": (sub(("ssh:\n  private_key: {key}\n", "ssh: mykey\n")),
                     "ssh: expected a mapping"),
    "ssh user uppercase": (sub(("ssh:\n", "ssh:\n  user: Root\n")), "ssh.user"),
    "typo private_key": (sub(("private_key:", "privat_key:")),
                         "unknown key privat_key; did you mean private_key?"),
    "private_key a number": (sub(("private_key: {key}", "private_key: 600")),
                             "ssh.private_key: expected text"),
    "docker package": (sub(("nodes:\n", "docker: {package: podman}\nnodes:\n")),
                       "docker.package: 'podman' is not one of"),
    # nodes
    "nodes missing": (sub(("nodes:\n", "nodez:\n")), "did you mean nodes?"),
    "nodes empty": ("farm: t\ngcp: {project: test-project, zones: [us-central1-a]}\nnodes: []\n",
                    "nodes: the list is empty"),
    "nodes a number": (LAB_LIKE.split("nodes:")[0] + "nodes: 3\n", "nodes: expected a list"),
    "nodes a mapping": (sub(("nodes:\n", "nodes:\n  x: 1\nunused:\n")), "expected a list"),
    "node a string": (sub(("nodes:\n", "nodes:\n  - arm\n")), "nodes[0]: expected a mapping"),
    "node name missing": (sub(("  - name: arm\n    platform", "  - platform")),
                          "nodes[0].name: required key is missing"),
    "node name uppercase": (sub(("name: arm", "name: ARM")), "nodes[0].name"),
    "node names twice": (sub(("name: x86", "name: arm")), "is used twice"),
    "node names twice after count": (arm("count: 2").replace("name: x86", "name: arm-2"),
                                     "node name arm-2 is used twice"),
    "unknown node key": (arm("colour: red"), "nodes[0].colour: unknown key"),
    "typo machine type key": (sub(("machine_type: t2a", "machinetype: t2a")),
                              "did you mean machine_type?"),
    "unknown platform": (sub(("platform: linux/arm64", "platform: linux/riscv64")),
                         "nodes[0].platform: 'linux/riscv64' is not one of"),
    "platform mismatch": (sub(("machine_type: t2a-standard-2", "machine_type: n2-standard-2")),
                          "nodes[0].platform: platform linux/arm64 does not match"),
    "x86 platform on an Arm type": (sub(("machine_type: n2-standard-2",
                                         "machine_type: t2a-standard-2")),
                                    "nodes[1].platform: platform linux/amd64 does not match"),
    "machine type uppercase": (sub(("t2a-standard-2", "T2A-standard-2")),
                               "nodes[0].machine_type"),
    "node zones without T2A": (arm("zones: [us-east1-b]"),
                               "nodes[0].zones: none of us-east1-b offers T2A"),
    "node zones empty": (arm("zones: []"), "nodes[0].zones: the list is empty"),
    "count zero": (arm("count: 0"), "nodes[0].count: 0 is out of range"),
    "count too big": (arm("count: 101"), "nodes[0].count: 101 is out of range"),
    "count quoted": (arm('count: "3"'), "got the quoted string '3'"),
    "count true": (arm("count: true"), "nodes[0].count: expected a whole number, got true"),
    "count a float": (arm("count: 2.5"), "nodes[0].count: expected a whole number"),
    "spot maybe": (arm("spot: maybe"), "nodes[0].spot: expected true or false"),
    "spot quoted": (arm('spot: "true"'), "got the quoted string"),
    "max_run_hours zero": (arm("max_run_hours: 0"), "nodes[0].max_run_hours: 0 is out of range"),
    "max_run_hours too big": (arm("max_run_hours: 721"), "nodes[0].max_run_hours"),
    "disk_gb too small": (arm("disk_gb: 9"), "nodes[0].disk_gb: 9 is out of range"),
    "disk_gb quoted": (arm('disk_gb: "50"'), "nodes[0].disk_gb"),
    "image a mapping": (arm("image: {family: debian}"), "nodes[0].image: expected text"),
}


@pytest.mark.parametrize("case", list(INVENTORIES))
def test_a_bad_inventory_exits_2_before_any_api_call(fake_gce, tmp_path, capsys,
                                                     record_property, case):
    text, expected = INVENTORIES[case]
    path = tmp_path / "farm.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text_of(text, fake_gce.endpoint, tmp_path / "ssh" / "farm-key"))
    message = exits_2(vms_task, inventory=str(path), capsys=capsys, fake=fake_gce,
                      record_property=record_property, mentions=[str(path), "api_endpoint"],
                      root=tmp_path)
    assert expected in message, message
    assert len(message) < 2000 and "\n" not in message


def test_the_line_is_named(fake_gce, write_inventory, capsys, record_property):
    path = write_inventory(LAB_LIKE.replace("machine_type: n2-standard-2",
                                            "machine_type: n2-standard-2\n    spot: maybe"))
    code = run_vms(path)
    err = capsys.readouterr().err
    record_property("exit", code)
    record_property("tracebacks", count_tracebacks(err))
    assert code == 2 and fake_gce.requests() == []
    assert f"{path}:17: nodes[1].spot:" in err and "Fix: use true or false" in err


# Once defects: bad input that got past the checks (each now refused before any API call).
DEFECTS = {
    # '' fell back to ~/.ssh/archfarm-<farm>; '   ' made key files named '   ' in the cwd
    "private_key empty": (sub(("private_key: {key}", 'private_key: ""')), "ssh.private_key"),
    "private_key blank": (sub(("private_key: {key}", 'private_key: "   "')), "ssh.private_key"),
    # '' meant Google's production endpoint with the user's real credentials
    "api_endpoint empty": (sub(("api_endpoint: {endpoint}", 'api_endpoint: ""')),
                           "gcp.api_endpoint"),
    # Compute Engine names and network tags end in a letter or digit
    "node name ends in a dash": (sub(("name: arm", "name: arm-")), "nodes[0].name"),
    "farm name ends in a dash": (sub(("farm: t", "farm: t-")), "farm"),
    # reached the API after the rule and the other VMs were made
    "disk_type junk": (arm('disk_type: "SSD!"'), "nodes[0].disk_type"),
    "network junk": (gcp('network: "Default Net"'), "gcp.network"),
    "image empty": (arm('image: ""'), "nodes[0].image"),
    # its recap row would clash with the firewall rule's
    "node name reserved": (sub(("name: arm", "name: archfarm-t-ssh")), "nodes[0].name"),
}


@pytest.mark.parametrize(("text", "key"), list(DEFECTS.values()), ids=list(DEFECTS))
def test_bad_input_that_once_got_past_the_checks(fake_gce, tmp_path, capsys, record_property,
                                             text, key):
    path = tmp_path / "farm.yaml"
    path.write_text(text_of(text, fake_gce.endpoint, tmp_path / "ssh" / "farm-key"))
    message = exits_2(vms_task, inventory=str(path), capsys=capsys, fake=fake_gce,
                      record_property=record_property, mentions=[str(path)], root=tmp_path)
    assert key in message, message


# -- the inventory path ------------------------------------------------------------------------

def _directory(tmp: Path) -> Path:
    (tmp / "inv").mkdir()
    (tmp / "inv" / "farm.yaml").write_text("farm: t\n")
    return tmp / "inv"


def _under_a_file(tmp: Path) -> Path:
    (tmp / "file").write_text("x")
    return tmp / "file" / "farm.yaml"


def _fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "fifo")
    return tmp / "fifo"


PATHS = {
    "missing file": (lambda tmp: tmp / "nope.yaml", "no such inventory file"),
    "directory": (_directory, "is a directory, not an inventory file"),
    "a path under a file": (_under_a_file, "a parent of this path is a file"),
    "FIFO": (_fifo, "not a regular file"),
    "/dev/null": (lambda tmp: "/dev/null", "not a regular file"),
    "/proc/self/environ": (lambda tmp: "/proc/self/environ", "not valid YAML"),
    "empty -i": (lambda tmp: "", "the inventory path is empty"),
    "blank -i": (lambda tmp: "   ", "the inventory path is empty"),
}


@pytest.mark.parametrize("case", list(PATHS))
def test_a_bad_inventory_path_exits_2(fake_gce, tmp_path, capsys, record_property, case):
    make, expected = PATHS[case]
    path = str(make(tmp_path))
    message = exits_2(vms_task, inventory=path, capsys=capsys, fake=fake_gce,
                      record_property=record_property, mentions=[path or "-i ''", "-i '   '"],
                      root=tmp_path)
    assert expected in message, message


def test_no_inventory_given_and_no_default_here(fake_gce, tmp_path, capsys, record_property):
    message = exits_2(vms_task, inventory=None, capsys=capsys, fake=fake_gce,
                      record_property=record_property, mentions=["inventory/lab.yaml"],
                      root=tmp_path)
    assert "no such inventory file" in message


# -- --limit, the environment, every task ------------------------------------------------------

@pytest.mark.parametrize(("limit", "expected"), [
    ("nosuch", "no node named nosuch in farm t"),
    ("arm,nosuch", "no node named nosuch"),
    ("", "names no node"),
    (" , ", "names no node"),
    ("arm-1", "no node named arm-1"),
])
def test_a_bad_limit_exits_2(fake_gce, inventory, tmp_path, capsys, record_property, limit,
                             expected):
    message = exits_2(vms_task, inventory=str(inventory), limit=limit, capsys=capsys, fake=fake_gce,
                      record_property=record_property, mentions=["--limit"], root=tmp_path)
    assert expected in message


@pytest.mark.parametrize(("endpoint", "expected"), [
    ("ftp://127.0.0.1:8089", "is not a URL"),
    ("http://203.0.113.7:8089", "plain http"),
    ("127.0.0.1:8089", "is not a URL"),
])
def test_a_bad_endpoint_in_the_environment_exits_2(fake_gce, inventory, tmp_path, capsys,
                                                   monkeypatch, record_property, endpoint,
                                                   expected):
    monkeypatch.setenv("ARCHFARM_GCE_ENDPOINT", endpoint)
    message = exits_2(vms_task, inventory=str(inventory), capsys=capsys, fake=fake_gce,
                      record_property=record_property, mentions=["api_endpoint"], root=tmp_path)
    assert expected in message


TASKS = {
    "vms": functools.partial(vms_task),
    "vms --check": functools.partial(vms_task, check=True),
    "status": functools.partial(status_task),
    "destroy --yes": functools.partial(destroy_task, yes=True),
    "destroy --check": functools.partial(destroy_task, check=True),
}


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("case", ["unknown node key", "range whole internet"])
def test_every_task_refuses_a_bad_inventory(fake_gce, tmp_path, capsys, record_property, task,
                                            case):
    path = tmp_path / "farm.yaml"
    path.write_text(text_of(INVENTORIES[case][0], fake_gce.endpoint, tmp_path / "k"))
    message = exits_2(TASKS[task], inventory=str(path), capsys=capsys, fake=fake_gce,
                      record_property=record_property, mentions=[str(path)], root=tmp_path)
    assert INVENTORIES[case][1] in message


def test_no_firewall_and_no_source_ranges_exits_2_without_mutating(
        fake_gce, write_inventory, tmp_path, capsys, record_property):
    """The one bad input only the cloud can show (is the rule there?): reads, no change."""
    path = write_inventory(LAB_LIKE.replace("  ssh_source_ranges: [127.0.0.1/32]\n", ""))
    message = exits_2(vms_task, inventory=str(path), capsys=capsys, fake=fake_gce,
                      record_property=record_property, mentions=["gcp.ssh_source_ranges"],
                      root=tmp_path, no_requests=False)
    assert "does not exist and gcp.ssh_source_ranges is empty" in message
    assert fake_gce.mutating_requests() == []
    assert {r["method"] for r in fake_gce.requests()} <= {"instances.aggregatedList",
                                                          "firewalls.get"}


# -- the SSH key ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def keys(tmp_path_factory):
    """Key material, made once: a pair, another public key, encrypted and unusable keys."""
    made = tmp_path_factory.mktemp("keys")

    def ssh_pub(key) -> bytes:
        return key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                             serialization.PublicFormat.OpenSSH) + b" c\n"

    key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass", "-C", "x", "-f",
                    str(made / "enc")], check=True, capture_output=True)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SimpleNamespace(
        private=key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.OpenSSH,
                                  serialization.NoEncryption()),
        public=ssh_pub(key),
        other_public=ssh_pub(other),
        encrypted=(made / "enc").read_bytes(),
        encrypted_pem=rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass")),
        dsa=dsa.generate_private_key(key_size=1024).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()),
    )


def write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def pair(tmp: Path, k, *, pub: bytes | None = None, mode: int = 0o600) -> Path:
    key = write(tmp / "ssh" / "farm-key", k.private, mode)
    if pub is not None:
        write(tmp / "ssh" / "farm-key.pub", pub, 0o644)
    return key


def _victim(tmp: Path) -> Path:
    return write(tmp / "victim.txt", b"someone else's file\n", 0o644)


def _pub_symlink(tmp: Path, k, *, private: bool = True, target: Path | None = None) -> Path:
    key = pair(tmp, k) if private else tmp / "ssh" / "farm-key"
    key.parent.mkdir(exist_ok=True)
    (tmp / "ssh" / "farm-key.pub").symlink_to(target or _victim(tmp))
    return key


def _key_dir(tmp: Path, k) -> Path:
    (tmp / "ssh" / "farm-key").mkdir(parents=True)
    return tmp / "ssh" / "farm-key"


def _key_under_a_file(tmp: Path, k) -> Path:
    write(tmp / "ssh" / "file", b"x")
    return tmp / "ssh" / "file" / "farm-key"


def _pub_as_private(tmp: Path, k) -> Path:
    return write(tmp / "ssh" / "farm-key.pub", k.public, 0o644)


def _pub_is_a_dir(tmp: Path, k) -> Path:
    key = pair(tmp, k)
    (tmp / "ssh" / "farm-key.pub").mkdir()
    return key


def _key_fifo(tmp: Path, k) -> Path:
    (tmp / "ssh").mkdir()
    os.mkfifo(tmp / "ssh" / "farm-key", 0o600)
    return tmp / "ssh" / "farm-key"


def _key_dangling(tmp: Path, k) -> Path:
    (tmp / "ssh").mkdir()
    (tmp / "ssh" / "farm-key").symlink_to(tmp / "gone")
    return tmp / "ssh" / "farm-key"


def _key_to_proc(tmp: Path, k) -> Path:
    (tmp / "ssh").mkdir()
    (tmp / "ssh" / "farm-key").symlink_to("/proc/self/environ")
    return tmp / "ssh" / "farm-key"


KEYS = {
    "a directory": (_key_dir, "is a directory"),
    "a path under a file": (_key_under_a_file, "is a file, not a directory"),
    "/proc/self/environ": (lambda tmp, k: "/proc/self/environ", "is under /proc"),
    "a symlink to /proc/self/environ": (_key_to_proc, "is under /proc"),
    "/dev/null": (lambda tmp, k: "/dev/null", "is under /dev"),
    "a .pub file": (_pub_as_private, "this is a public key (.pub)"),
    "junk bytes": (lambda tmp, k: write(tmp / "ssh" / "farm-key", os.urandom(400)),
                   "is not a private key archfarm can read"),
    "an empty file": (lambda tmp, k: write(tmp / "ssh" / "farm-key", b""),
                      "is not a private key archfarm can read"),
    "a public key": (lambda tmp, k: write(tmp / "ssh" / "farm-key", k.public),
                     "holds a public key, not a private key"),
    "an encrypted OpenSSH key": (lambda tmp, k: write(tmp / "ssh" / "farm-key", k.encrypted),
                                 "encrypted with a passphrase"),
    "an encrypted PEM key": (lambda tmp, k: write(tmp / "ssh" / "farm-key", k.encrypted_pem),
                             "encrypted with a passphrase"),
    "a DSA key": (lambda tmp, k: write(tmp / "ssh" / "farm-key", k.dsa),
                  "which OpenSSH no longer accepts"),
    "too big": (lambda tmp, k: write(tmp / "ssh" / "farm-key", k.private * 200),
                "is too big for the private key"),
    "a FIFO": (_key_fifo, "is not a regular file"),
    "a dangling symlink": (_key_dangling, "is a symbolic link to a missing file"),
    "a junk .pub next to a valid key": (lambda tmp, k: pair(tmp, k, pub=b"ssh-ed25519 junk\n"),
                                        "is not an OpenSSH public key"),
    "a binary .pub next to a valid key": (lambda tmp, k: pair(tmp, k, pub=os.urandom(200)),
                                          "is not an OpenSSH public key"),
    "a mismatched .pub": (lambda tmp, k: pair(tmp, k, pub=k.other_public),
                          "does not match the private key"),
    "a .pub that is a directory": (_pub_is_a_dir, "is a directory"),
    "a 0644 key": (lambda tmp, k: pair(tmp, k, pub=k.public, mode=0o644),
                   "its permissions 0644 let group or others read"),
    "a 0640 key": (lambda tmp, k: pair(tmp, k, mode=0o640), "chmod 600"),
    "a 0604 key": (lambda tmp, k: pair(tmp, k, mode=0o604), "chmod 600"),
    "only a .pub": (lambda tmp, k: write(tmp / "ssh" / "farm-key.pub", k.public, 0o644)
                    .with_name("farm-key"), "a public key alone cannot log in"),
    "a planted .pub symlink to a victim file": (_pub_symlink, "is not an OpenSSH public key"),
    "a planted .pub symlink to a victim, no key": (
        lambda tmp, k: _pub_symlink(tmp, k, private=False), "a public key alone cannot log in"),
    "a dangling .pub symlink": (lambda tmp, k: _pub_symlink(tmp, k, target=tmp / "planted"),
                                "is a symbolic link to a missing file"),
    "a dangling .pub symlink, no key": (
        lambda tmp, k: _pub_symlink(tmp, k, private=False, target=tmp / "planted"),
        "a public key alone cannot log in"),
}


@pytest.mark.parametrize("case", list(KEYS))
def test_a_bad_ssh_key_exits_2_and_changes_nothing(fake_gce, tmp_path, capsys, keys,
                                                  record_property, case):
    make, expected = KEYS[case]
    key = str(make(tmp_path, keys))
    path = tmp_path / "farm.yaml"
    path.write_text(text_of(LAB_LIKE, fake_gce.endpoint, key))
    message = exits_2(vms_task, inventory=str(path), capsys=capsys, fake=fake_gce,
                      record_property=record_property, mentions=[key, f"{key}.pub"], root=tmp_path)
    assert expected in message, message
    assert not (tmp_path / "planted").exists()


# -- through the real command line ---------------------------------------------------------------

def _inv_cases(tmp: Path, endpoint: str, k) -> dict[str, tuple[list[str], str]]:
    good = tmp / "farm.yaml"
    good.write_text(text_of(LAB_LIKE, endpoint, pair(tmp, k, pub=k.public)))
    bad = tmp / "bad.yaml"
    bad.write_text("farm: t\nnodes: 3\n")
    return {
        "bad inventory": (["vms", "-i", str(bad)], str(bad)),
        "missing inventory": (["vms", "-i", str(tmp / "nope.yaml")], "no such inventory file"),
        "directory": (["status", "-i", str(tmp)], "is a directory"),
        "empty -i": (["vms", "-i", ""], "the inventory path is empty"),
        "bad --limit": (["vms", "-i", str(good), "--limit", "nosuch"], "no node named nosuch"),
        "empty --limit": (["vms", "-i", str(good), "--limit", ""], "names no node"),
        "destroy, bad inventory": (["destroy", "--yes", "-i", str(bad)], str(bad)),
    }


INV_CASES = ["bad inventory", "missing inventory", "directory", "empty -i", "bad --limit",
             "empty --limit", "destroy, bad inventory"]


@pytest.mark.parametrize("case", INV_CASES)
def test_bad_input_through_the_real_command_line(fake_gce, tmp_path, keys, record_property,
                                                 case):
    args, expected = _inv_cases(tmp_path, fake_gce.endpoint, keys)[case]
    before = snapshot(tmp_path)
    result = inv(*args, "--json", home=tmp_path / "home")
    record_property("exit", result.returncode)
    record_property("tracebacks", count_tracebacks(result.stderr))
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stdout + result.stderr
    message = json.loads(result.stdout.strip().splitlines()[-1])["error"]
    assert expected in message and "Fix:" in message, message
    assert fake_gce.requests() == []
    assert snapshot(tmp_path) == before


def test_a_bad_key_through_the_real_command_line(fake_gce, tmp_path, keys, record_property):
    key = _pub_symlink(tmp_path, keys)
    path = tmp_path / "farm.yaml"
    path.write_text(text_of(LAB_LIKE, fake_gce.endpoint, key))
    before = snapshot(tmp_path)
    result = inv("vms", "-i", str(path), home=tmp_path / "home")
    record_property("exit", result.returncode)
    record_property("tracebacks", count_tracebacks(result.stderr))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{key}.pub" in result.stderr and "Fix:" in result.stderr
    assert fake_gce.requests() == []
    assert snapshot(tmp_path) == before


def test_missing_credentials_exits_2_and_names_the_fix(tmp_path, record_property):
    """A real project endpoint with no credentials: stop before any connection is made."""
    path = tmp_path / "real.yaml"
    path.write_text(LAB_LIKE.replace("  api_endpoint: {endpoint}\n", "")
                    .format(key=tmp_path / "k"))
    result = inv("vms", "-i", str(path), home=tmp_path,
                 env={"GOOGLE_APPLICATION_CREDENTIALS": "", "ARCHFARM_GCE_ENDPOINT": ""})
    record_property("exit", result.returncode)
    record_property("tracebacks", count_tracebacks(result.stderr))
    assert result.returncode == 2
    assert "gcloud auth application-default login" in result.stderr
    assert "Traceback" not in result.stderr
