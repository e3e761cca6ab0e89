"""Lab: `inv bake` scheduling N targets x 2 platforms on 1+1, 2+2 and 4+4 nodes: its makespan
beside the ideal and beside the same builds started by hand.

    inv lab.up && python bench/bake.py [--targets 8] [--sleep 5] [--repeat 3] [--nodes 1,2,4]
                                       [--keep] [--quick]

One farm, `benchbake` of project `archfarm-benchbake`, grown rather than made three times:
provisioned (`inv provision`: vms, configure, register) with 1 linux/arm64 node
(t2a-standard-2) and 1 linux/amd64 node (n2-standard-2), then with 2 + 2, then 4 + 4 (the
lab's quota is 8 external addresses a project). The nodes keep their names as the farm grows:
1 + 1 is the node specs `arm64-1` and `amd64-1`, then `count: 2` and `count: 4` of `arm64` and
`amd64`, which expand to `arm64-1 ..`, so no node is replaced (a `count: 1` node `arm64`
would be a different node from `arm64-1`).

The image is a fixed sleep, so the figures measure scheduling, not this machine's CPUs: `FROM`
the lab's run image, `ARG NONCE`, `RUN sleep S` (writing the nonce), every target with a nonce
of its own each run, so every job is a cache miss. A docker-bake.hcl with `--targets` targets,
each for both platforms and tagged `127.0.0.1:5000/benchbake/tN:...`: jobs = 2 x targets (16:
2 waves on 4 + 4 nodes). At each size, after a warm-up (one build on every node: the nodes
pull the base image; not with --quick):

- job time: one target, one platform, by hand (below), on the first node of each platform in
  turn; the slower platform's median is the job time, and the ideal makespan is
  ceil(jobs / nodes) x job time;
- (a) `inv bake -i INV FILE --json`, the whole command as a user runs it (a fresh
  interpreter), every target's index checked in its JSON;
- (b) by hand: the same jobs on the same nodes as the ideal static plan (job i of a platform on
  node i mod k of it), one sequential queue per node, all queues at once; each job `docker
  --context archfarm-benchbake-<node> buildx build --platform P --output
  type=image,name=TAG-<os>-<arch>,push=true --metadata-file F --build-arg NONCE=.. DIR`, and
  each target's `docker buildx imagetools create -t TAG repo@d1 repo@d2` as soon as both its
  platforms are pushed: the work archfarm does (build, push, merge).

`--repeat` rounds at each size (median and min), (a) and (b) alternating which goes first.

Targets (issue): at 4 + 4 nodes, makespan (a) <= 1.15 x ideal + 1 s; (a) - (b) <= 0.5 s. The
stderr of every `inv bake` is kept with a timestamp per line; when a target is missed, the
bench prints where the time of the median run went. The farm is destroyed at the end (`inv
destroy --yes`) unless --keep; the registry keeps the tags pushed.

--quick: 1 + 1 nodes only, 2 targets, a 2 s sleep, one round, no warm-up (measuring the job time
pulls the base image on both nodes).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import Load, add_quick, destroy_farm, figures, must, provision_converged, sizes, stamp

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
INV = [PY, "-m", "invoke"]
PROJECT = "archfarm-benchbake"
FARM = "benchbake"
ENDPOINT = "http://127.0.0.1:8089"
REGISTRY = "127.0.0.1:5000"
REPOSITORY = f"{REGISTRY}/benchbake"
BASE_IMAGE = f"{REGISTRY}/lab/debian-run:bookworm"  # the lab's, from `inv lab.up`
STATE = Path.home() / ".cache" / "archfarm-bench"
PLATFORMS = {"arm64": ("linux/arm64", "t2a-standard-2"),   # node name -> platform, machine
             "amd64": ("linux/amd64", "n2-standard-2")}


def nodes_of(per_platform: int) -> dict[str, list[str]]:
    """platform -> its node names, in inventory order."""
    return {platform: [f"{arch}-{i}" for i in range(1, per_platform + 1)]
            for arch, (platform, _) in PLATFORMS.items()}


def node_specs(per_platform: int) -> str:
    """The inventory's nodes: at 1 per platform a spec named like the first counted node, so
    growing to `count: N` keeps it (see the docstring)."""
    lines = []
    for arch, (platform, machine) in PLATFORMS.items():
        name = f"name: {arch}-1" if per_platform == 1 else f"name: {arch}, count: {per_platform}"
        lines.append(f"  - {{{name}, platform: {platform}, machine_type: {machine}}}\n")
    return "".join(lines)


def suffix(platform: str) -> str:
    return platform.replace("/", "-")


class Bench:
    def __init__(self, workdir: Path, sleep: float):
        self.dir = workdir
        self.inventory = workdir / "benchbake.yaml"
        STATE.mkdir(parents=True, exist_ok=True)
        docker = shutil.which("docker")
        if not docker:
            sys.exit("the docker CLI is not installed here")
        self.docker = docker
        self.context = workdir / "ctx"  # one Dockerfile for every target; the nonce differs
        self.context.mkdir()
        (self.context / "Dockerfile").write_text(
            f"FROM {BASE_IMAGE}\nARG NONCE\nRUN sleep {sleep} && echo \"$NONCE\" > /nonce\n")
        self.nodes: dict[str, list[str]] = {}

    def inv(self, *args: str) -> list[str]:
        return [*INV, *args, "-i", str(self.inventory)]

    def provision(self, per_platform: int) -> float:
        self.inventory.write_text(f"""farm: {FARM}
gcp:
  project: {PROJECT}
  zones: [us-central1-a]
  api_endpoint: {ENDPOINT}
  ssh_source_ranges: [127.0.0.1/32]
ssh: {{user: builder, private_key: {STATE / f"key-{FARM}"}}}
docker: {{package: docker.io}}
nodes:
{node_specs(per_platform)}""")
        self.nodes = nodes_of(per_platform)
        started = time.perf_counter()
        provision_converged(self.inv("provision"))
        return time.perf_counter() - started

    # -- by hand ---------------------------------------------------------------------------

    def build_one(self, node: str, platform: str, tag: str, nonce: str) -> dict:
        """One job by hand: build on the node's engine and push under the per-platform tag."""
        meta = self.dir / f"meta-{uuid.uuid4().hex}.json"
        start = time.perf_counter()
        proc = subprocess.run(
            [self.docker, "--context", f"archfarm-{FARM}-{node}", "buildx", "build",
             "--platform", platform, "--output",
             f"type=image,name={tag}-{suffix(platform)},push=true", "--metadata-file",
             str(meta), "--build-arg", f"NONCE={nonce}", str(self.context)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL)
        end = time.perf_counter()
        if proc.returncode != 0:
            sys.exit(f"docker buildx build on {node} failed:\n{proc.stderr[-3000:]}")
        return {"digest": json.loads(meta.read_text())["containerimage.digest"],
                "start": start, "end": end, "seconds": end - start}

    def by_hand(self, targets: list[str], tags: dict[str, str], nonces: dict[str, str]
                ) -> dict:
        """Every target x platform, job i of a platform on node i mod k of it, one queue per
        node, all queues at once; each target merged as soon as both its platforms are in."""
        start = time.perf_counter()
        queues: dict[str, list[tuple[str, str]]] = {}  # node -> [(target, platform)]
        for platform, nodes in self.nodes.items():
            for i, target in enumerate(targets):
                queues.setdefault(nodes[i % len(nodes)], []).append((target, platform))
        built: dict[str, dict[str, dict]] = {t: {} for t in targets}
        lock = threading.Lock()

        def merge(target: str) -> None:
            repo = tags[target].rsplit(":", 1)[0]
            must([self.docker, "buildx", "imagetools", "create", "-t", tags[target],
                  *(f"{repo}@{b['digest']}" for b in built[target].values())],
                 f"imagetools create of {target}")

        with ThreadPoolExecutor(len(targets)) as merges, \
                ThreadPoolExecutor(len(queues)) as builds:
            started = []

            def queue(node: str) -> None:
                for target, platform in queues[node]:
                    job = self.build_one(node, platform, tags[target], nonces[target])
                    with lock:
                        built[target][platform] = {**job, "node": node}
                        if len(built[target]) == len(self.nodes):
                            started.append(merges.submit(merge, target))

            for done in [builds.submit(queue, node) for node in queues]:
                done.result()  # a failed build's SystemExit comes out here
            for done in started:
                done.result()
        jobs = [j for per in built.values() for j in per.values()]
        busy: dict[str, float] = {}
        for j in jobs:
            busy[j["node"]] = busy.get(j["node"], 0.0) + j["seconds"]
        wall = time.perf_counter() - start
        return {"wall": wall, "job_median": statistics.median(j["seconds"] for j in jobs),
                "busiest": max(busy.values()), "build": min(j["start"] for j in jobs) - start,
                "tail": wall - (max(j["end"] for j in jobs) - start)}

    def job_time(self, rounds: int) -> tuple[float, dict[str, float]]:
        """One job alone (one target, one platform, by hand) on the first node of each
        platform in turn: the slower platform's median, and each platform's."""
        each = {}
        for platform, nodes in self.nodes.items():
            times = [self.build_one(nodes[0], platform, f"{REPOSITORY}/single:x",
                                    uuid.uuid4().hex)["seconds"] for _ in range(rounds)]
            each[platform] = statistics.median(times)
        return max(each.values()), each

    def warm_up(self) -> None:
        """One build on every node at once: each pulls the base image (not counted)."""
        jobs = [(n, p) for p, nodes in self.nodes.items() for n in nodes]
        with ThreadPoolExecutor(len(jobs)) as pool:
            for done in [pool.submit(self.build_one, n, p, f"{REPOSITORY}/warm:x",
                                     uuid.uuid4().hex) for n, p in jobs]:
                done.result()

    # -- inv bake --------------------------------------------------------------------------

    def bake_file(self, name: str, targets: list[str], tags: dict[str, str],
                  nonces: dict[str, str]) -> Path:
        platforms = ", ".join(f'"{p}"' for p in self.nodes)
        names = ", ".join(f'"{t}"' for t in targets)
        blocks = [f'group "default" {{\n  targets = [{names}]\n}}\n']
        for t in targets:
            blocks.append(f'target "{t}" {{\n  context = "{self.context}"\n'
                          f'  platforms = [{platforms}]\n  tags = ["{tags[t]}"]\n'
                          f'  args = {{ NONCE = "{nonces[t]}" }}\n}}\n')
        path = self.dir / name / "docker-bake.hcl"
        path.parent.mkdir()
        path.write_text("\n".join(blocks))
        return path

    def inv_bake(self, bake: Path, targets: list[str], tags: dict[str, str]) -> dict:
        """`inv bake -i INV FILE --json` as a user runs it; stderr kept, each line with the
        seconds since the start."""
        start = time.perf_counter()
        proc = subprocess.Popen(self.inv("bake", str(bake), "--json"), cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)
        timeline: list[tuple[float, str]] = []
        out: list[str] = []

        def read_stderr() -> None:
            for line in proc.stderr:
                timeline.append((time.perf_counter() - start, line.rstrip("\n")))

        reader = threading.Thread(target=read_stderr)
        reader.start()
        for line in proc.stdout:
            timeline.append((time.perf_counter() - start, "[stdout] " + line.rstrip("\n")))
            out.append(line)
        proc.wait()
        wall = time.perf_counter() - start
        reader.join()
        log = bake.parent / "inv-bake.log"
        log.write_text("".join(f"{t:7.2f} {line}\n" for t, line in timeline))
        if proc.returncode != 0:
            sys.exit(f"inv bake {bake} failed (exit {proc.returncode}); its output:\n"
                     + "\n".join(line for _, line in timeline[-60:]))
        report = json.loads(out[-1])
        for t in targets:
            got = report["targets"].get(t) or {}
            if got.get("error") or not got.get("digest") or got.get("image") != tags[t]:
                sys.exit(f"inv bake: target {t} is not right in its JSON: {got}")
        seconds = [p["seconds"] for t in report["targets"].values() for p in t["platforms"]
                   if p.get("seconds") is not None]
        waves = 1 + max(s.get("wave", 0) for s in report["schedule"])
        marks = {}  # its phases: the first progress line of each kind
        for key, words in (("schedule", "schedule:"), ("build", " building on "),
                           ("merge", " merging ")):
            marks[key] = next((t for t, line in timeline if words in line), math.nan)
        busy: dict[str, float] = {}
        for target in report["targets"].values():
            for p in target["platforms"]:
                busy[p["node"]] = busy.get(p["node"], 0.0) + (p.get("seconds") or 0.0)
        return {"wall": wall, "timeline": timeline, "log": log, "report": report, **marks,
                "job_median": statistics.median(seconds) if seconds else None,
                "waves": waves, "busy": busy, "busiest": max(busy.values()),
                # the last target's merge starts the moment the last build is done
                "tail": wall - max((t for t, line in timeline if " merging " in line),
                                   default=math.nan)}


def where_time_went(run: dict) -> list[str]:
    """A missed target: the median run's progress lines (its tables left out) with the seconds
    since its start, and its builds' seconds per node from its JSON."""
    lines = [f"inv bake took {run['wall']:.2f} s in {run['waves']} wave(s); its stderr, seconds"
             f" since the start (whole in {run['log']} with --keep):"]
    progress = [(t, line) for t, line in run["timeline"]
                if not any(c in line for c in "│┃━") and not line.startswith("[stdout]")]
    if len(progress) > 60:
        progress = progress[:30] + [(progress[30][0], "...")] + progress[-30:]
    lines += [f"  {t:7.2f} {line[:150]}" for t, line in progress]
    lines.append("builds' seconds per node (its JSON): " + ", ".join(
        f"{n} {s:.1f}" for n, s in sorted(run["busy"].items())))
    return lines


def stats(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} {min(values):6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, help="bake targets (default 8; 2 with --quick)")
    parser.add_argument("--sleep", type=float, help="the job's sleep, seconds (default 5; 2"
                                                    " with --quick)")
    parser.add_argument("--repeat", type=int, help="measured rounds (default 3; 1 with --quick)")
    parser.add_argument("--nodes", help="nodes per platform, in growing order (default 1,2,4;"
                                        " 1 with --quick)")
    parser.add_argument("--keep", action="store_true", help="leave the farm provisioned")
    add_quick(parser)
    args = parser.parse_args()
    sizes(args, targets=(8, 2), sleep=(5.0, 2.0), repeat=(3, 1), nodes=("1,2,4", "1"))
    per_platform = [int(n) for n in args.nodes.split(",")]
    if per_platform != sorted(per_platform) or per_platform[-1] > 4 or per_platform[0] < 1:
        parser.error("--nodes: growing counts of 1 to 4 (the lab's quota is 8 VMs a project)")

    print(stamp("start"), flush=True)
    load = Load()
    workdir = Path(tempfile.mkdtemp(prefix="archfarm-bench-bake-"))
    bench: Bench | None = None
    results = []
    try:
        bench = Bench(workdir, args.sleep)
        must([*INV, "lab.up"], "inv lab.up")
        targets = [f"t{i}" for i in range(1, args.targets + 1)]
        for k in per_platform:
            took = bench.provision(k)
            print(f"inv provision of farm {FARM} with {k} + {k} nodes: {took:.1f} s", flush=True)
            if not args.quick:
                bench.warm_up()
            job, each = bench.job_time(args.repeat)
            jobs, nodes = 2 * len(targets), 2 * k
            ideal = math.ceil(jobs / nodes) * job
            print(f"{k} + {k}: job time {job:.2f} s ("
                  + ", ".join(f"{p} {s:.2f}" for p, s in each.items())
                  + f"); ideal {math.ceil(jobs / nodes)} x {job:.2f} = {ideal:.2f} s", flush=True)
            rows = []
            for n in range(1, args.repeat + 1):
                row: dict = {}
                ways = ["a", "b"] if n % 2 else ["b", "a"]
                for way in ways:
                    name = f"n{k}-r{n}-{way}"
                    tags = {t: f"{REPOSITORY}/{t}:{name}" for t in targets}
                    nonces = {t: f"{name}-{t}-{uuid.uuid4().hex}" for t in targets}
                    if way == "a":
                        bake = bench.bake_file(name, targets, tags, nonces)
                        row["a"] = bench.inv_bake(bake, targets, tags)
                    else:
                        row["b"] = bench.by_hand(targets, tags, nonces)
                a, b = row["a"], row["b"]
                print(f"{k} + {k}, round {n}, {' then '.join(ways)}: (a) inv bake"
                      f" {a['wall']:.2f} s ({a['waves']} waves), (b) by hand {b['wall']:.2f} s;"
                      f" (a) - (b) {a['wall'] - b['wall']:+.2f} s; load"
                      f" {os.getloadavg()[0]:.1f}", flush=True)
                rows.append(row)
            results.append({"k": k, "jobs": jobs, "job": job, "each": each, "ideal": ideal,
                            "rows": rows})

        with figures("bake.py, inv bake beside the ideal and the same builds by hand",
                     args.quick):
            warm_up = "no warm-up" if args.quick else "after a warm-up build on every node"
            print(f"{len(targets)} targets x 2 platforms = {2 * len(targets)} jobs, each"
                  f" `RUN sleep {args.sleep:g}`; {args.repeat} round(s) a size ({warm_up});"
                  " seconds, median  min\n")
            print(f"{'nodes':<7} {'job':>5} {'ideal':>6}  {'(a) inv bake':>13}  {'ratio':>5}"
                  f"  {'1.15x+1':>7}  {'(b) by hand':>13}  {'(a) - (b)':>13}  targets")
            for r in results:
                a = [row["a"]["wall"] for row in r["rows"]]
                b = [row["b"]["wall"] for row in r["rows"]]
                over = [row["a"]["wall"] - row["b"]["wall"] for row in r["rows"]]
                limit = 1.15 * r["ideal"] + 1
                verdicts = []
                if r["k"] == 4:  # the makespan target is at 4 + 4
                    verdicts.append("makespan " + ("met" if statistics.median(a) <= limit
                                                   else "MISSED"))
                verdicts.append("overhead " + ("met" if statistics.median(over) <= 0.5
                                               else "MISSED"))
                r["missed"] = any("MISSED" in v for v in verdicts)
                print(f"{r['k']} + {r['k']:<3} {r['job']:5.2f} {r['ideal']:6.2f}  {stats(a)}"
                      f"  {statistics.median(a) / r['ideal']:5.2f}  {limit:7.2f}  {stats(b)}"
                      f"  {stats(over)}  {', '.join(verdicts)}")
            # On a small host the jobs of a full farm slow each other (8 lab VMs on this
            # machine's CPUs): the ideal again, from a job's time among the others in the
            # by-hand run, separates the scheduling from the host.
            print("\nthe ideal from a job's time among the others, in (b): the same farm's"
                  " contention, so only the scheduling is left")
            for r in results:
                among = statistics.median(row["b"]["job_median"] for row in r["rows"])
                ideal = math.ceil(r["jobs"] / (2 * r["k"])) * among
                a = statistics.median(row["a"]["wall"] for row in r["rows"])
                print(f"  {r['k']} + {r['k']}: job {among:5.2f}, ideal {ideal:6.2f}, (a)"
                      f" {a:6.2f}, ratio {a / ideal:4.2f}, 1.15x+1 {1.15 * ideal + 1:6.2f}"
                      f" -> {'met' if a <= 1.15 * ideal + 1 else 'MISSED'}")
            print("\nwhere the time goes, medians of the rounds: a job's seconds alone (the job"
                  " time), among the others in (a) (its JSON) and in (b); start -> first"
                  " build; the busiest node's builds, summed; last build done -> exit (the"
                  " merges and read-backs left)")
            for r in results:
                rows = r["rows"]

                def med(way: str, key: str, rows: list = rows) -> float:
                    return statistics.median(x[way][key] for x in rows)

                print(f"  {r['k']} + {r['k']}: a job alone " + ", ".join(
                    f"{p} {s:.2f}" for p, s in r["each"].items())
                    + f"; among the others (a) {med('a', 'job_median'):.2f}, (b)"
                    f" {med('b', 'job_median'):.2f}; waves in (a)'s schedule"
                    f" {rows[0]['a']['waves']} (ideal {math.ceil(r['jobs'] / (2 * r['k']))})")
                print(f"         (a) start -> first build {med('a', 'build'):5.2f}, busiest node"
                      f" {med('a', 'busiest'):6.2f}, last build -> exit {med('a', 'tail'):5.2f},"
                      f" exit at {med('a', 'wall'):6.2f}")
                print(f"         (b) start -> first build {med('b', 'build'):5.2f}, busiest node"
                      f" {med('b', 'busiest'):6.2f}, last build -> exit {med('b', 'tail'):5.2f},"
                      f" exit at {med('b', 'wall'):6.2f}")
            for r in results:
                if r["missed"]:
                    runs = sorted((row["a"] for row in r["rows"]), key=lambda x: x["wall"])
                    print(f"\nwhere (a)'s time went at {r['k']} + {r['k']} (its median run):")
                    print("\n".join(where_time_went(runs[len(runs) // 2])))
            print(f"\n{load.summary()}\n{stamp('end')}")
    finally:
        if bench and not args.keep and bench.inventory.exists():
            destroy_farm(bench.inv("destroy", "--yes"))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept: the farm and {workdir} (inv bake's logs)")


if __name__ == "__main__":
    main()
