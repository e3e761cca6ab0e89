"""Lab: a farm whose nodes come and go (issue 17, part 8): the rebuild of a workload with a slow
step on a node that was just recreated, cold and from the registry cache, beside the warm
rebuild on a node that kept its cache; and the wake of a stopped node by `inv build`.

    inv lab.up && python bench/elastic.py [--repeat 3] [--slow 10] [--keep] [--quick]

A farm of project `archfarm-benchelastic` in the running lab: `el`, one linux/amd64 node
(n2-standard-2, Debian 13, Docker 26.1 on the containerd image store), `docker.package:
docker.io`, provisioned with `inv provision`.

The workload is what registry cache is for: a slow step that rarely changes (`RUN sleep SLOW`,
the stand-in for installing dependencies), then a small step that changes every build (`COPY
app.txt`, the stand-in for the code). Each round, in a repository of its own (no round reads
another's cache), every build with a new app.txt, each `inv build ... --push` timed whole as a
user runs it:

- (c) cold: on a node just recreated (its VM deleted through the API, as a lost spot VM is,
  then `inv provision`: a new VM, no image, no build cache), `inv build` without cache
  options: the slow step runs;
- (w) warm: `inv build` again on the same node: the slow step comes from its local cache;
- (s) warm with `--cache registry`: again, now also exporting the cache to the registry
  (`REPO:buildcache-linux-amd64`, mode=max);
- the node is recreated again (the time of delete + `inv provision` is shown);
- (r) registry: `inv build --cache registry` on the new node: the slow step comes from the
  registry cache.

Every build's buildx log is read (a `docker` on PATH copies it: inv build keeps a log only
when it fails) for whether the slow step ran: CACHED, or DONE sooner than its sleep (a layer
fetched from the registry cache), is from cache; a figure whose builds did not hit (or did
not miss) as they should is marked with the logs, not hidden.

Targets (issue 17): (r) <= 1.5 x (w), and (r) <= 0.5 x (c); the ratios are of the medians.
Wake: the node's VM stopped through the API (as idle stop leaves it), then `inv build`: seconds
from its start to the first line of the node's build log (the wake, a ssh probe, the slot),
beside the lab's insert -> SSH-ready of one VM measured in the same run
(bench/lab_ssh_ready.py). Target: wake <= insert-to-SSH-ready + 2 s.

The farm is destroyed at the end (`inv destroy --yes`) unless --keep; the registry keeps the
rounds' images and caches (under 127.0.0.1:5000/benchelastic/).

--quick: one round, a 3 s slow step.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from _common import Load, add_quick, destroy_farm, figures, provision_converged, sizes, stamp

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
INV = [PY, "-m", "invoke"]
PROJECT = "archfarm-benchelastic"
FARM = "el"
NODE = "amd64"
ZONE = "us-central1-a"
ENDPOINT = "http://127.0.0.1:8089"
REGISTRY = "127.0.0.1:5000"
STATE = Path.home() / ".cache" / "archfarm-bench"

# `docker`, with the output of every `buildx build` also appended to $BENCH_BUILD_LOG.
TEE = """#!/bin/bash
case " $* " in
  *" buildx build "*)
    {docker} "$@" 2> >(tee -a "$BENCH_BUILD_LOG" >&2)
    status=$?
    wait $!
    exit $status ;;
esac
exec {docker} "$@"
"""


class Bench:
    def __init__(self, workdir: Path, slow: int):
        self.dir, self.slow = workdir, slow
        self.inventory = workdir / "el.yaml"
        STATE.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text(f"""farm: {FARM}
gcp:
  project: {PROJECT}
  zones: [{ZONE}]
  api_endpoint: {ENDPOINT}
  ssh_source_ranges: [127.0.0.1/32]
ssh: {{user: builder, private_key: {STATE / f"key-{FARM}"}}}
docker: {{package: docker.io}}
nodes:
  - {{name: {NODE}, platform: linux/amd64, machine_type: n2-standard-2}}
""")
        docker = shutil.which("docker")
        if not docker:
            sys.exit("the docker CLI is not installed here")
        shim = workdir / "shim"
        shim.mkdir()
        (shim / "docker").write_text(TEE.format(docker=docker))
        (shim / "docker").chmod(0o755)
        self.log = workdir / "build.log"
        self.env = {**os.environ, "BENCH_BUILD_LOG": str(self.log),
                    "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.ctx = workdir / "ctx"
        self.ctx.mkdir()
        (self.ctx / "Dockerfile").write_text(
            f"FROM {REGISTRY}/lab/debian-run:bookworm\n"
            f"RUN sleep {slow} && echo dependencies > /deps\n"
            "COPY app.txt /app.txt\n")

    def inv(self, *args: str) -> list[str]:
        return [*INV, *args, "-i", str(self.inventory)]

    def build(self, tag: str, *extra: str) -> dict:
        """One `inv build` with a new app.txt: its seconds, and whether the slow step was
        CACHED in its buildx log."""
        (self.ctx / "app.txt").write_text(f"{uuid.uuid4()}\n")
        self.log.write_text("")
        start = time.perf_counter()
        done = subprocess.run(self.inv("build", "--context", str(self.ctx), "--tag", tag,
                                       "--push", *extra), cwd=REPO, env=self.env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        took = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"inv build --tag {tag} {' '.join(extra)} failed (exit"
                     f" {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        log = self.log.read_text()
        return {"wall": took, "cached": slow_step_cached(log, self.slow), "log": log}

    def recreate(self) -> float:
        """The node's VM deleted through the API and made again by `inv provision`."""
        from google.api_core import exceptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import compute_v1

        client = compute_v1.InstancesClient(
            credentials=AnonymousCredentials(), transport="rest",
            client_options={"api_endpoint": ENDPOINT})
        start = time.perf_counter()
        client.delete(project=PROJECT, zone=ZONE, instance=f"{FARM}-{NODE}")
        while True:
            try:
                client.get(project=PROJECT, zone=ZONE, instance=f"{FARM}-{NODE}")
            except exceptions.NotFound:
                break
            if time.perf_counter() - start > 180:
                sys.exit("the node's VM was not deleted within 180 s")
            time.sleep(0.2)
        provision_converged(self.inv("provision"))
        return time.perf_counter() - start


def slow_step_cached(log: str, slow: int) -> bool | None:
    """Whether buildx's plain log says the slow step did not run: CACHED, or DONE in less than
    its sleep (a layer fetched from the registry cache is shown under the step, then DONE);
    None when the step is not in the log."""
    step = re.search(rf"^(#\d+) \[\d+/\d+\] RUN sleep {slow} ", log, re.MULTILINE)
    if not step:
        return None
    number = step.group(1)
    if re.search(rf"^{number} CACHED$", log, re.MULTILINE):
        return True
    done = re.search(rf"^{number} DONE ([0-9.]+)s$", log, re.MULTILINE)
    return done is not None and float(done.group(1)) < slow


# -- wake ------------------------------------------------------------------------------------

def stop_node(client) -> None:
    """The node's VM stopped through the API (as idle stop leaves it), waited for."""
    client.stop(project=PROJECT, zone=ZONE, instance=f"{FARM}-{NODE}")
    deadline = time.monotonic() + 180
    while client.get(project=PROJECT, zone=ZONE, instance=f"{FARM}-{NODE}").status \
            != "TERMINATED":
        if time.monotonic() > deadline:
            sys.exit("the node's VM did not stop within 180 s")
        time.sleep(0.2)


def first_log_line(bench: Bench, tag: str) -> tuple[float, dict]:
    """`inv build` on the stopped node: seconds from its start to the first line of the
    node's build log (the file `inv build` streams buildx's output to, in its TMPDIR), and
    its --json (the wake column)."""
    tmp = Path(tempfile.mkdtemp(prefix="wake-", dir=bench.dir))
    (bench.ctx / "app.txt").write_text(f"{uuid.uuid4()}\n")
    started = time.perf_counter()
    proc = subprocess.Popen(bench.inv("build", "--context", str(bench.ctx), "--tag", tag,
                                      "--push", "--json"), cwd=REPO,
                            env={**bench.env, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    seen = None
    while seen is None and proc.poll() is None:
        if any(log.stat().st_size for log in tmp.glob("archfarm-build-*/*.log")):
            seen = time.perf_counter() - started
        else:
            time.sleep(0.02)
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0 or seen is None:
        sys.exit(f"inv build on the stopped node failed (exit {proc.returncode}):\n"
                 f"{err[-3000:]}")
    return seen, json.loads(out.strip().splitlines()[-1])


def wake(bench: Bench, quick: bool) -> dict:
    """A stopped node woken by `inv build`: stopped -> the first line of its build log, beside
    the lab's insert -> SSH-ready for one VM (bench/lab_ssh_ready.py, in this run)."""
    import lab_ssh_ready
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import compute_v1

    client = compute_v1.InstancesClient(credentials=AnonymousCredentials(), transport="rest",
                                        client_options={"api_endpoint": ENDPOINT})
    key = bench.dir / "ready-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    out: dict = {"wake": [], "ssh_ready": [], "column": []}
    for n in range(1 if quick else 3):
        out["ssh_ready"] += lab_ssh_ready.run(1, key, bench.dir)
        stop_node(client)
        seconds, report = first_log_line(bench, f"{REGISTRY}/benchelastic/wake:{n}")
        out["wake"].append(seconds)
        out["column"] += [r["wake"] for r in report["platforms"] if r["wake"] is not None]
        print(f"wake {n + 1}: first build log line after {seconds:.2f} s (wake column"
              f" {out['column'][-1] if out['column'] else '-'} s); insert -> SSH-ready"
              f" {out['ssh_ready'][-1]:.2f} s", flush=True)
    return out


def stats(values: list[float]) -> str:
    if not values:
        return "  none   none"
    return f"{statistics.median(values):6.2f} {min(values):6.2f}"


def hits(rows: list[dict], key: str) -> str:
    """In how many of the builds the slow step did not run (CACHED, or fetched from cache)."""
    cached = [r[key]["cached"] for r in rows]
    return f"slow step from cache in {sum(1 for c in cached if c)} of {len(cached)}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, help="rounds (default 3; 1 with --quick)")
    parser.add_argument("--slow", type=int, help="seconds of the slow step (default 10; 3"
                        " with --quick)")
    parser.add_argument("--keep", action="store_true", help="leave the farm provisioned")
    add_quick(parser)
    args = parser.parse_args()
    sizes(args, repeat=(3, 1), slow=(10, 3))

    print(stamp("start"), flush=True)
    load = Load()
    workdir = Path(tempfile.mkdtemp(prefix="archfarm-bench-elastic-"))
    bench: Bench | None = None
    try:
        bench = Bench(workdir, args.slow)
        subprocess.run([*INV, "lab.up"], cwd=REPO, check=True, capture_output=True)
        started = time.perf_counter()
        provision_converged(bench.inv("provision"))
        print(f"inv provision of farm {FARM}: {time.perf_counter() - started:.1f} s", flush=True)
        run = uuid.uuid4().hex[:8]
        rows: list[dict] = []
        for n in range(1, args.repeat + 1):
            tag = f"{REGISTRY}/benchelastic/{run}-r{n}:app"  # a repository of its own
            # the first round's node is new from `inv provision`; later ones hold (r)'s cache
            row: dict = {"recreate": [bench.recreate()] if n > 1 else []}
            row["c"] = bench.build(tag)
            row["w"] = bench.build(tag)
            row["s"] = bench.build(tag, "--cache", "registry")
            row["recreate"].append(bench.recreate())
            row["r"] = bench.build(tag, "--cache", "registry")
            print(f"round {n}: (c) {row['c']['wall']:.2f} s, (w) {row['w']['wall']:.2f} s,"
                  f" (s) {row['s']['wall']:.2f} s, (r) {row['r']['wall']:.2f} s; slow step"
                  f" cached: c {row['c']['cached']}, w {row['w']['cached']}, s"
                  f" {row['s']['cached']}, r {row['r']['cached']}; recreate"
                  f" {', '.join(f'{s:.1f}' for s in row['recreate'])} s", flush=True)
            rows.append(row)
        woken = wake(bench, args.quick)

        def col(key: str) -> list[float]:
            return [r[key]["wall"] for r in rows]

        cold, warm, registry = (statistics.median(col(k)) for k in "cwr")
        to_warm, to_cold = registry / warm, registry / cold
        expected = (all(r["c"]["cached"] is False for r in rows)
                    and all(r[k]["cached"] for r in rows for k in "wsr"))
        table = [
            ("(c) cold: recreated node, no cache", stats(col("c")), hits(rows, "c")),
            ("(w) warm: the same node again, its local cache", stats(col("w")), hits(rows, "w")),
            ("(s) warm, with --cache registry (exports the cache)", stats(col("s")),
             hits(rows, "s")),
            ("(r) registry: recreated node, --cache registry", stats(col("r")),
             hits(rows, "r")),
            ("ratio (r) / (w)", f"{to_warm:6.2f} {'':>6}",
             f"<= 1.5 -> {'met' if to_warm <= 1.5 else 'MISSED'}"),
            ("ratio (r) / (c)", f"{to_cold:6.2f} {'':>6}",
             f"<= 0.5 -> {'met' if to_cold <= 0.5 else 'MISSED'}"),
            ("recreate: VM deleted, then inv provision",
             stats([s for r in rows for s in r["recreate"]]), ""),
        ]
        ready = statistics.median(woken["ssh_ready"]) + 2
        table += [
            ("insert -> SSH-ready, one lab VM", stats(woken["ssh_ready"]), ""),
            ("wake: stopped -> first build log line", stats(woken["wake"]),
             f"<= {ready:.2f} (SSH-ready + 2 s) -> "
             f"{'met' if statistics.median(woken['wake']) <= ready else 'MISSED'}"),
            ("  of which the wake column (start, keys, engine)", stats(woken["column"]), "")]
        with figures("elastic.py, rebuilds on a recreated node, cold and from the registry"
                     " cache, beside the warm rebuild", args.quick):
            print(f"{args.repeat} rounds, slow step {args.slow} s; seconds of the whole"
                  " inv build; median  min\n")
            print(f"{'figure':<56} {'median':>6} {'min':>6}  target / note")
            for name, values, note in table:
                print(f"{name:<56} {values}  {note}")
            if not expected:
                print("\nWARNING: a build did not hit (or miss) the cache as its figure says"
                      " it should (see the counts above). Their logs:")
                for n, row in enumerate(rows, 1):
                    for key in "cwsr":
                        if row[key]["cached"] is not (key != "c"):
                            print(f"--- round {n} ({key})\n{row[key]['log'][-4000:]}")
            print(f"\n{load.summary()}\n{stamp('end')}")
    finally:
        if bench and not args.keep:
            destroy_farm(bench.inv("destroy", "--yes"))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
