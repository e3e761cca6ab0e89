"""Lab: `inv build --strategy merge` beside the same per-node builds and `imagetools create`
run by hand, a second build of the unchanged context, and the time to the first build log line.

    inv lab.up && python bench/build.py [--repeat 7] [--keep] [--quick]

A farm of project `archfarm-benchbuild` in the running lab: `bb`, one linux/arm64 node
(t2a-standard-2) and one linux/amd64 node (n2-standard-2), `docker.package: docker.io`,
provisioned with `inv provision` (vms, configure, register: docker contexts
`archfarm-bb-arm64` and `archfarm-bb-amd64` over ssh). `buildx.buildkit_image` points at a
lab-registry name so nothing ever contacts Docker Hub (merge needs no buildkit image).

One warm-up round (not counted: the nodes pull the lab's base images), then `--repeat` rounds
(median and min), the order of (a) and (b) alternating from round to round. Each round builds
its own copies of examples/hello whose hello.c carries a unique comment, so the compile stage
is a cache miss for both ways and both do the same work:

- (a) `inv build -i INV --context DIR --tag 127.0.0.1:5000/bench/hello:rN-a --strategy merge
  --push`, the whole command as a user runs it;
- (b) by hand: the same two per-node builds started at once, `docker --context
  archfarm-bb-<node> buildx build --platform P --output type=image,name=TAG-linux-<arch>,
  push=true --metadata-file F DIR`, then `docker buildx imagetools create -t TAG repo@d1
  repo@d2`;
- (c) `inv build` again, right after (a), of the unchanged context and tag (cache hits);
- (e) and (f): (a) and (b) again on fresh copies, both asking for attestations
  (`--provenance mode=max --sbom generator=127.0.0.1:5000/lab/sbom-scanner:bookworm`, the
  lab's SBOM generator); (e) also reads each platform's provenance and SBOM back from the
  index, as every attested `inv build` does;
- (d) on every `inv build` (the target is judged on the cold builds of (a)): seconds from its
  start to the first line in any `archfarm-build-*/*.log` file (its per-platform build logs;
  `inv build` runs with a private TMPDIR so the newest such directory is its own), beside the
  first progress line on its stdout, the moment it started `docker buildx build` (a `docker`
  shim on PATH notes it) and the moment buildx printed its first line in (b).

Targets (issue): (a) / (b) and (e) / (f) at most 1.05; (d) under 2 s. The machine's load
average is sampled during the run. The farm is destroyed at the end (`inv destroy --yes`)
unless --keep; the registry is left alone.

--quick: one round and no warm-up round (a, b, c and d each once; the first round pulls the
base images, so it is slower than a full run's rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _common import Load, add_quick, destroy_farm, figures, must, provision_converged, sizes, stamp

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
INV = [PY, "-m", "invoke"]
PROJECT = "archfarm-benchbuild"
FARM = "bb"
ENDPOINT = "http://127.0.0.1:8089"
REGISTRY = "127.0.0.1:5000"
REPOSITORY = f"{REGISTRY}/bench/hello"
ATTEST = ["--provenance=mode=max", f"--sbom=generator={REGISTRY}/lab/sbom-scanner:bookworm"]
STATE = Path.home() / ".cache" / "archfarm-bench"
NODES = {"arm64": "linux/arm64", "amd64": "linux/amd64"}  # node -> platform


def context_copy(workdir: Path, name: str) -> Path:
    """examples/hello with a unique comment in hello.c: the compile stage misses the cache."""
    dest = workdir / "ctx" / name
    shutil.copytree(REPO / "examples" / "hello", dest)
    with open(dest / "hello.c", "a") as f:
        f.write(f"/* bench {name} {uuid.uuid4()} */\n")
    return dest


SHIM = """#!/bin/sh
# bench/build.py: notes when inv build starts `docker buildx build`, then is docker.
case " $* " in *" buildx build "*) date +%s.%N >> "$BENCH_MARKS" ;; esac
exec {docker} "$@"
"""


class Bench:
    def __init__(self, workdir: Path):
        self.dir = workdir
        self.inventory = workdir / "bb.yaml"
        STATE.mkdir(parents=True, exist_ok=True)
        self.inventory.write_text(f"""farm: {FARM}
gcp:
  project: {PROJECT}
  zones: [us-central1-a]
  api_endpoint: {ENDPOINT}
  ssh_source_ranges: [127.0.0.1/32]
ssh: {{user: builder, private_key: {STATE / f"key-{FARM}"}}}
docker: {{package: docker.io}}
buildx: {{buildkit_image: {REGISTRY}/moby/buildkit:none}}   # nothing reaches Docker Hub
nodes:
  - {{name: arm64, platform: linux/arm64, machine_type: t2a-standard-2}}
  - {{name: amd64, platform: linux/amd64, machine_type: n2-standard-2}}
""")
        docker = shutil.which("docker")
        if not docker:
            sys.exit("the docker CLI is not installed here")
        self.docker = docker
        self.shim = workdir / "shim"
        self.shim.mkdir()
        (self.shim / "docker").write_text(SHIM.format(docker=docker))
        (self.shim / "docker").chmod(0o755)
        self.tmp = workdir / "tmp"  # TMPDIR of every inv build: its archfarm-build-* dirs
        self.tmp.mkdir()

    def inv(self, *args: str) -> list[str]:
        return [*INV, *args, "-i", str(self.inventory)]

    # -- (a), (c), (d): inv build ----------------------------------------------------------

    def inv_build(self, ctx: Path, tag: str, extra: tuple[str, ...] = ()) -> dict:
        marks = self.dir / f"marks-{uuid.uuid4().hex}"
        env = {**os.environ, "TMPDIR": str(self.tmp), "BENCH_MARKS": str(marks),
               "PATH": f"{self.shim}{os.pathsep}{os.environ.get('PATH', '')}"}
        before = {p.name for p in self.tmp.iterdir()}
        wall0 = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(self.inv("build", "--context", str(ctx), "--tag", tag,
                                         "--strategy", "merge", "--push", *extra),
                                cwd=REPO, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        seen: dict[str, float] = {}
        out: list[str] = []
        err: list[str] = []

        def read(stream, lines: list[str], key: str) -> None:
            for line in stream:
                if key not in seen and "building on" in line:
                    seen[key] = time.perf_counter() - start
                lines.append(line)

        readers = [threading.Thread(target=read, args=(proc.stdout, out, "progress")),
                   threading.Thread(target=read, args=(proc.stderr, err, "progress-stderr"))]
        for r in readers:
            r.start()
        while proc.poll() is None:
            if "log" not in seen:
                dirs = [p for p in self.tmp.glob("archfarm-build-*") if p.name not in before]
                if dirs:
                    newest = max(dirs, key=lambda p: p.stat().st_mtime)
                    if any(f.stat().st_size > 0 for f in newest.glob("*.log")):
                        seen["log"] = time.perf_counter() - start
            time.sleep(0.01)
        took = time.perf_counter() - start
        for r in readers:
            r.join()
        if proc.returncode != 0:
            sys.exit(f"inv build --tag {tag} failed (exit {proc.returncode}):\n"
                     f"{''.join(out)[-3000:]}\n{''.join(err)[-3000:]}")
        starts = [float(x) - wall0 for x in marks.read_text().split()] if marks.exists() else []
        return {"wall": took, "log": seen.get("log"),
                "progress": seen.get("progress", seen.get("progress-stderr")),
                "buildx_start": min(starts) if starts else None}

    # -- (b): by hand ----------------------------------------------------------------------

    def by_hand(self, ctx: Path, tag: str, extra: tuple[str, ...] = ()) -> dict:
        start = time.perf_counter()
        first: list[float] = []
        procs = {}
        for node, platform in NODES.items():
            meta = ctx.parent / f"{ctx.name}-{node}.json"
            procs[node] = (meta, subprocess.Popen(
                [self.docker, "--context", f"archfarm-{FARM}-{node}", "buildx", "build",
                 "--platform", platform, "--output",
                 f"type=image,name={tag}-{platform.replace('/', '-')},push=true",
                 "--metadata-file", str(meta), *extra, str(ctx)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                stdin=subprocess.DEVNULL))
        logs: dict[str, list[str]] = {n: [] for n in procs}

        def read(node: str, stream) -> None:
            for line in stream:
                if not first:
                    first.append(time.perf_counter() - start)
                logs[node].append(line)

        readers = [threading.Thread(target=read, args=(n, p.stderr)) for n, (_, p) in
                   procs.items()]
        for r in readers:
            r.start()
        digests = []
        for node, (meta, proc) in procs.items():
            proc.wait()
            if proc.returncode != 0:
                sys.exit(f"docker buildx build on {node} failed:\n{''.join(logs[node])[-3000:]}")
            digests.append(json.loads(meta.read_text())["containerimage.digest"])
        for r in readers:
            r.join()
        must([self.docker, "buildx", "imagetools", "create", "-t", tag,
              *(f"{REPOSITORY}@{d}" for d in digests)], "imagetools create")
        return {"wall": time.perf_counter() - start, "first_line": first[0] if first else None}


def stats(values: list[float]) -> str:
    if not values:  # e.g. a build that printed no progress line
        return "  none   none"
    return f"{statistics.median(values):6.2f} {min(values):6.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, help="measured rounds (default 7; 1 with --quick)")
    parser.add_argument("--keep", action="store_true", help="leave the farm provisioned")
    add_quick(parser)
    args = parser.parse_args()
    sizes(args, repeat=(7, 1))
    first_round = 1 if args.quick else 0  # round 0 is the warm-up; --quick goes without

    print(stamp("start"), flush=True)
    load = Load()
    workdir = Path(tempfile.mkdtemp(prefix="archfarm-bench-build-"))
    bench: Bench | None = None
    try:
        bench = Bench(workdir)
        must([*INV, "lab.up"], "inv lab.up")
        started = time.perf_counter()
        provision_converged(bench.inv("provision"))
        print(f"inv provision of farm {FARM}: {time.perf_counter() - started:.1f} s", flush=True)

        rows: list[dict] = []
        for n in range(first_round, args.repeat + 1):  # round 0: warm-up, not counted
            row: dict = {}
            ways = ["a", "b", "e", "f"] if n % 2 else ["f", "e", "b", "a"]
            for way in ways:
                ctx = context_copy(workdir, f"r{n}-{way}")
                tag = f"{REPOSITORY}:r{n}-{way}"
                extra = tuple(ATTEST) if way in "ef" else ()
                if way == "a":
                    row["a"] = bench.inv_build(ctx, tag)
                    row["c"] = bench.inv_build(ctx, tag)
                elif way == "e":
                    row["e"] = bench.inv_build(ctx, tag, extra)
                else:
                    row[way] = bench.by_hand(ctx, tag, extra)
            a, b, c, e, f = (row[k]["wall"] for k in "abcef")
            print(f"round {n}{' (warm-up)' if n == 0 else ''}, {' then '.join(ways)}: (a)"
                  f" {a:.2f} s, (b) {b:.2f} s, ratio {a / b:.2f}; (c) {c:.2f} s; attested"
                  f" (e) {e:.2f} s, (f) {f:.2f} s, ratio {e / f:.2f}; first log line"
                  f" {row['a']['log'] or float('nan'):.2f} s", flush=True)
            if n:
                rows.append(row)

        def col(way: str, key: str) -> list[float]:
            return [r[way][key] for r in rows if r[way].get(key) is not None]

        ratios = [r["a"]["wall"] / r["b"]["wall"] for r in rows]
        attested = [r["e"]["wall"] / r["f"]["wall"] for r in rows]
        logs = col("a", "log")
        ratio = statistics.median(ratios)
        first_log = statistics.median(logs) if logs else float("inf")
        warm_up = "no warm-up" if args.quick else "after one warm-up"
        table = [
            ("(a) inv build --strategy merge --push, cold", stats(col("a", "wall")), ""),
            ("(b) by hand: 2 x buildx build in parallel + imagetools create",
             stats(col("b", "wall")), ""),
            ("ratio (a) / (b)", f"{ratio:6.2f} {min(ratios):6.2f}",
             f"<= 1.05 -> {'met' if ratio <= 1.05 else 'MISSED'}"),
            ("(a) - (b): what inv build adds, in seconds",
             stats([r["a"]["wall"] - r["b"]["wall"] for r in rows]), ""),
            ("(c) inv build again, unchanged context (cache hits)", stats(col("c", "wall")),
             ""),
            ("(e) (a) with provenance mode=max and SBOM, read back", stats(col("e", "wall")),
             ""),
            ("(f) (b) with provenance mode=max and SBOM", stats(col("f", "wall")), ""),
            ("ratio (e) / (f)", f"{statistics.median(attested):6.2f} {min(attested):6.2f}",
             f"<= 1.05 -> {'met' if statistics.median(attested) <= 1.05 else 'MISSED'}"),
            ("(e) - (f): what inv build adds with attestations, in seconds",
             stats([r["e"]["wall"] - r["f"]["wall"] for r in rows]), ""),
            ("(d) inv build start -> first line in archfarm-build-*/*.log, (a)",
             stats(logs),
             f"< 2 s -> {'met' if first_log < 2 else 'MISSED'}"),
            ("    the same in (c), the cache-hit builds",
             stats(col("c", "log")), ""),
            ("    inv build start -> first 'building on' progress line",
             stats(col("a", "progress") + col("c", "progress")), ""),
            ("    inv build start -> it runs `docker buildx build` (shim)",
             stats(col("a", "buildx_start") + col("c", "buildx_start")), ""),
            ("    by hand: buildx build start -> its first output line",
             stats(col("b", "first_line")), ""),
        ]
        with figures("build.py, inv build beside the same builds by hand", args.quick):
            print(f"{args.repeat} rounds ({warm_up}), seconds; median  min\n")
            print(f"{'figure':<66} {'median':>6} {'min':>6}  target")
            for name, values, target in table:
                print(f"{name:<66} {values}  {target}")
            print(f"\n{load.summary()}\n{stamp('end')}")
    finally:
        if bench and not args.keep:
            destroy_farm(bench.inv("destroy", "--yes"))
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
