"""Server mode: `python -m provision.fakegce` and `serve()` in a child process."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from .conftest import PROJECT, ZONE


def _start(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "provision.fakegce", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("listening on http://127.0.0.1:"), (line, proc.stderr.read())
    return proc, line.split()[-1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_server_mode_serves_until_a_signal_then_exits_0(sig):
    proc, endpoint = _start("--operation-seconds", "0.01")
    try:
        vms = compute_v1.InstancesClient(
            credentials=AnonymousCredentials(), transport="rest",
            client_options={"api_endpoint": endpoint})
        assert list(vms.list(project=PROJECT, zone=ZONE)) == []
        assert requests.get(f"{endpoint}/_fake/requests", timeout=5).json()[0]["status"] == 200
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_server_mode_has_no_lab_backend_options():
    """The lab builds its own FakeGCE(backend=...) and calls serve(); the fake knows no lab."""
    run = subprocess.run([sys.executable, "-m", "provision.fakegce", "--backend", "docker"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 2 and "unrecognized arguments: --backend" in run.stderr
    code = "import sys, provision.fakegce.__main__; print(any(m.startswith('provision.lab') " \
           "for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert out.strip() == "False"


def test_serve_is_exported_for_a_caller_with_its_own_backend():
    code = ("import signal, threading, os\n"
            "from provision.fakegce import FakeGCE, MemoryBackend, serve\n"
            "fake = FakeGCE(backend=MemoryBackend(), operation_seconds=0.01)\n"
            "threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()\n"
            "raise SystemExit(serve(fake) + 7)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 7, run.stderr
    assert run.stdout.startswith("listening on http://127.0.0.1:")


def _raw(fake, data: bytes) -> bytes:
    import socket

    host, port = fake.endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):  # the server closes: we read to the end
            chunks.append(chunk)
    return b"".join(chunks)


def test_request_parsing_keeps_http_semantics(fake_gce):
    zone = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}"
    # HTTP/1.0 without keep-alive: one answer, then the server closes
    out = _raw(fake_gce, f"GET {zone} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 200 ") and out.count(b"HTTP/1.1") == 1
    assert b'"name": "us-central1-a"' in out
    # two requests on one HTTP/1.1 connection, a body on the first, then Connection: close
    body = b'{"labels": {}, "labelFingerprint": "x"}'
    out = _raw(fake_gce, (
        f"POST {zone}/instances/nope/setLabels HTTP/1.1\r\nhost: x\r\n"
        f"content-type: application/json\r\nCONTENT-LENGTH: {len(body)}\r\n\r\n").encode()
        + body + f"GET {zone} HTTP/1.1\r\nConnection: close\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 404 ") and out.count(b"HTTP/1.1 200 ") == 1
    assert b"instances/nope' was not found" in out
    # a malformed request line is 400 and ends the connection
    assert _raw(fake_gce, b"NONSENSE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert _raw(fake_gce, b"GET / HTTP/2.0\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    methods = [(r["method"], r["status"]) for r in fake_gce.requests()]
    assert methods == [("zones.get", 200), ("instances.setLabels", 404), ("zones.get", 200)]
