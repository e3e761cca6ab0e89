"""Lab: `inv check-arm` on a workload of N images in the lab registry, beside what a user would
run by hand for the same answer: `docker manifest inspect` of each image for the platforms, and
`docker pull --platform linux/arm64` of each for what the arm64 variant holds.

    inv lab.up && python bench/check_arm.py [--images 20] [--repeat 3] [--quick]

The workload: N distinct multi-arch images (`127.0.0.1:5000/checkarm/bench-NN:1.0`, composed
in the lab registry from the lab's run image by tests/lab/workload_images.py: each platform
is the base layer plus one small layer of its own, entrypoint /bin/sh), one Deployment each,
all in one manifest file. No farm: nothing is run on a node.

Each round, the order of each pair alternating from round to round:

- (a) `inv check-arm --manifests FILE --manifest-only --json`: the platforms of every image,
  from the registry, no binaries read;
- (b) by hand: `docker manifest inspect --insecure IMAGE` for each image, one after another
  (--insecure: the lab registry is plain http on loopback);
- (c) `inv check-arm --manifests FILE --json`: the full check, the ELF machine of every arm64
  variant's entrypoint read from its layer blobs;
- (d) by hand: `docker pull --platform linux/arm64 IMAGE` for each image, one after another,
  every image removed from this machine's engine (`docker rmi`, not timed) before the round,
  so every pull fetches its manifest, config and own layer. The base layer all of them share
  is fetched once a round (as a user's engine would), not once an image.

Each `inv check-arm` is the whole command, a fresh interpreter, as a user runs it; it must
exit 0 with every image READY. Targets (issue 18): (a) <= 1.0 x (b); (c) <= 0.5 x (d), medians
of `--repeat` rounds (default 3). The images pulled are removed from the engine at the end; the
registry keeps the bench images (a second run pushes nothing).

--quick: 4 images, one round.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Load, add_quick, figures, must, sizes, stamp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.lab.workload_images, and this checkout's provision
from tests.lab.workload_images import bench_images  # noqa: E402

PY = sys.executable
INV = [PY, "-m", "invoke"]


def manifest_file(images: list[str], path: Path) -> Path:
    """One Deployment an image, in one multi-document file (as `helm template` prints)."""
    docs = []
    for i, image in enumerate(images, 1):
        docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: bench-{i:02d}
spec:
  selector:
    matchLabels: {{app: bench-{i:02d}}}
  template:
    metadata:
      labels: {{app: bench-{i:02d}}}
    spec:
      containers:
        - name: app
          image: {image}
""")
    path.write_text("---\n".join(docs))
    return path


def timed(cmd: list[str], what: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = must(cmd, what)
    return time.perf_counter() - started, done


def inv_check(manifests: Path, images: list[str], *flags: str) -> float:
    """`inv check-arm --manifests FILE [FLAGS] --json`, timed; every image must be READY."""
    seconds, done = timed([*INV, "check-arm", "--manifests", str(manifests), *flags, "--json"],
                          "inv check-arm")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    verdicts = {i["image"]: i["verdict"] for i in out["images"]}
    if verdicts != dict.fromkeys(images, "READY"):
        sys.exit(f"inv check-arm {' '.join(flags)} did not find every image READY: {verdicts}")
    return seconds


def manifest_inspect_each(images: list[str]) -> float:
    started = time.perf_counter()
    for image in images:
        must(["docker", "manifest", "inspect", "--insecure", image], "docker manifest inspect")
    return time.perf_counter() - started


def remove(images: list[str]) -> None:
    """The images gone from this machine's engine (those it does not have are no error)."""
    subprocess.run(["docker", "rmi", "--force", *images], capture_output=True, text=True)


def pull_each(images: list[str]) -> float:
    remove(images)
    started = time.perf_counter()
    for image in images:
        must(["docker", "pull", "--quiet", "--platform", "linux/arm64", image], "docker pull")
    return time.perf_counter() - started


def stats(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} {min(values):6.2f}"


def verdict(ratio: float, target: float) -> str:
    return f"<= {target:g}: {'met' if ratio <= target else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, help="images in the workload (default 20; 4 with"
                                                   " --quick)")
    parser.add_argument("--repeat", type=int, help="measured rounds (default 3; 1 with --quick)")
    add_quick(parser)
    args = parser.parse_args()
    sizes(args, images=(20, 4), repeat=(3, 1))
    if not shutil.which("docker"):
        sys.exit("the docker CLI is not installed here")

    print(stamp("start"), flush=True)
    load = Load()
    workdir = Path(tempfile.mkdtemp(prefix="archfarm-bench-check-arm-"))
    images: list[str] = []
    try:
        must([*INV, "lab.up"], "inv lab.up")
        started = time.perf_counter()
        images = bench_images(args.images)
        print(f"{len(images)} bench images in the lab registry:"
              f" {time.perf_counter() - started:.2f} s", flush=True)
        manifests = manifest_file(images, workdir / "workload.yaml")
        rows: list[dict[str, float]] = []
        for n in range(1, args.repeat + 1):
            row: dict[str, float] = {}
            for way in ("ab" if n % 2 else "ba") + ("cd" if n % 2 else "dc"):
                if way == "a":
                    row["a"] = inv_check(manifests, images, "--manifest-only")
                elif way == "b":
                    row["b"] = manifest_inspect_each(images)
                elif way == "c":
                    row["c"] = inv_check(manifests, images)
                else:
                    row["d"] = pull_each(images)
            print(f"round {n}: (a) {row['a']:.2f} s, (b) {row['b']:.2f} s, (c) {row['c']:.2f}"
                  f" s, (d) {row['d']:.2f} s", flush=True)
            rows.append(row)

        with figures("check_arm.py, inv check-arm on a workload beside docker by hand",
                     args.quick):
            print(f"{len(images)} multi-arch images, one Deployment each in one file;"
                  f" {args.repeat} round(s); seconds, median  min\n")
            col = {k: [row[k] for row in rows] for k in "abcd"}
            ab = statistics.median(col["a"]) / statistics.median(col["b"])
            cd = statistics.median(col["c"]) / statistics.median(col["d"])
            table = [
                ("(a) inv check-arm --manifests FILE --manifest-only", stats(col["a"]), ""),
                ("(b) docker manifest inspect, each image in turn", stats(col["b"]), ""),
                ("ratio (a) / (b)", f"{ab:6.2f}", verdict(ab, 1.0)),
                ("(c) inv check-arm --manifests FILE (ELF of each entrypoint)", stats(col["c"]),
                 ""),
                ("(d) docker pull --platform linux/arm64, each image in turn", stats(col["d"]),
                 ""),
                ("ratio (c) / (d)", f"{cd:6.2f}", verdict(cd, 0.5)),
            ]
            print(f"{'figure':<62} {'median':>6} {'min':>6}  target")
            for name, values, target in table:
                print(f"{name:<62} {values}  {target}")
            per_image = statistics.median(col["b"]) / len(images)
            print(f"\nby hand, one image: manifest inspect {per_image:.3f} s, pull"
                  f" {statistics.median(col['d']) / len(images):.3f} s")
            print(f"\n{load.summary()}\n{stamp('end')}")
    finally:
        remove(images)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
