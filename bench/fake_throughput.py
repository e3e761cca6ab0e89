"""Requests per second the fake serves for instances.get, through the real client.

    python bench/fake_throughput.py [--seconds 5] [--in-process] [--quick]

The fake runs in server mode (its own process, as the lab runs it), so the client's work does
not compete with it for one interpreter lock. One client thread, then eight, each with its own
InstancesClient (as a tool would). With --in-process both share one process, for comparison.

--quick: each measurement lasts 0.5 s, and the client's CPU per call is taken over 50 calls.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from _common import add_quick, figures, sizes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's provision, whatever is installed
from provision.fakegce import FakeGCE  # noqa: E402


def instances_client(endpoint: str) -> compute_v1.InstancesClient:
    return compute_v1.InstancesClient(credentials=AnonymousCredentials(), transport="rest",
                                      client_options={"api_endpoint": endpoint})


@contextlib.contextmanager
def server_process():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "provision.fakegce", "--port", str(port),
                             "--operation-seconds", "0"], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    try:
        proc.stdout.readline()  # "listening on ..."
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def in_process():
    with FakeGCE(operation_seconds=0) as fake:
        yield fake.endpoint


def measure_bare(endpoint: str, seconds: float) -> float:
    """One keep-alive connection with no client library: the fake's own request rate."""
    host, port = endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port))
    path = "/compute/v1/projects/bench/zones/us-central1-a/instances/vm-1"
    count, stop = 0, time.monotonic() + seconds
    while time.monotonic() < stop:
        conn.request("GET", path, headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        count += 1
    return count / seconds


def client_cpu_per_call(endpoint: str, calls: int) -> float:
    """CPU seconds the google-cloud-compute client itself spends on one instances.get."""
    client = instances_client(endpoint)
    before = time.process_time()
    for _ in range(calls):
        client.get(project="bench", zone="us-central1-a", instance="vm-1")
    return (time.process_time() - before) / calls


def measure(endpoint: str, threads: int, seconds: float) -> float:
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        client = instances_client(endpoint)
        while time.monotonic() < stop:
            client.get(project="bench", zone="us-central1-a", instance="vm-1")
            counts[i] += 1

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, help="per measurement (default 5; 0.5 with"
                        " --quick)")
    parser.add_argument("--in-process", action="store_true")
    add_quick(parser)
    args = parser.parse_args()
    sizes(args, seconds=(5.0, 0.5))
    cpu_calls = 50 if args.quick else 500
    fake = in_process() if args.in_process else server_process()
    title = "fake_throughput.py, instances.get through the real client"
    with fake as endpoint, figures(title, args.quick):
        vm = compute_v1.Instance(
            name="vm-1", machine_type="zones/us-central1-a/machineTypes/t2a-standard-1",
            disks=[compute_v1.AttachedDisk(boot=True, initialize_params=(
                compute_v1.AttachedDiskInitializeParams(
                    source_image="projects/debian-cloud/global/images/family/debian-13-arm64")))])
        instances_client(endpoint).insert_unary(project="bench", zone="us-central1-a",
                                                instance_resource=vm)
        mode = "in-process" if args.in_process else "server mode"
        for threads in (1, 8):
            rate = measure(endpoint, threads, args.seconds)
            print(f"instances.get ({mode}), {threads} client thread{'s' if threads > 1 else ''}:"
                  f" {rate:,.0f} requests/s")
        if not args.in_process:
            rate = measure_bare(endpoint, args.seconds)
            print(f"instances.get ({mode}), bare HTTP client, 1 connection: {rate:,.0f}"
                  f" requests/s ({1e6 / rate:.0f} us per round trip)")
            cpu = client_cpu_per_call(endpoint, cpu_calls)
            print(f"google-cloud-compute client CPU per instances.get: {cpu * 1e6:.0f} us"
                  f" (caps one client thread near {1 / cpu:,.0f} requests/s)")
            # The client library costs more CPU per call than the fake does: several client
            # processes show what the fake itself can serve.
            with multiprocessing.Pool(4) as pool:
                rates = pool.starmap(measure, [(endpoint, 2, args.seconds)] * 4)
            print(f"instances.get ({mode}), 4 client processes x 2 threads:"
                  f" {sum(rates):,.0f} requests/s")


if __name__ == "__main__":
    main()
