"""An inventory pointed at the in-process fake, helpers to run tasks as a user would, and the
fault / bad-input tallies printed at the end of a run.

Tallies: a test marked `@pytest.mark.tally("fault")` or `("bad_input")` is counted from its
reports' outcome and `user_properties` (so they add up under xdist too): "tracebacks" (how many
tracebacks the CLI printed) and "exit" (each exit code it returned), recorded by the test with
`record_property`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from provision import cli

REPO = Path(__file__).resolve().parents[2]

LAB_LIKE = """
farm: t
gcp:
  project: test-project
  zones: [us-central1-a, us-central1-b, us-central1-f]
  api_endpoint: {endpoint}
  ssh_source_ranges: [127.0.0.1/32]
ssh:
  private_key: {key}
nodes:
  - name: arm
    platform: linux/arm64
    machine_type: t2a-standard-2
  - name: x86
    platform: linux/amd64
    machine_type: n2-standard-2
"""


@pytest.fixture
def write_inventory(tmp_path, fake_gce):
    """Write an inventory (format placeholders: endpoint, key) and return its path."""
    def write(text: str = LAB_LIKE, name: str = "farm.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).format(endpoint=fake_gce.endpoint,
                                                     key=tmp_path / "ssh" / "farm-key"))
        return path
    return write


@pytest.fixture
def inventory(write_inventory) -> Path:
    return write_inventory()


def run_vms(inventory: Path, *, check=False, limit=None, prune=False) -> int:
    return cli.vms(str(inventory), check, limit, prune, False)


def run_json(fn, *args, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    code = fn(*args, True)
    out = capsys.readouterr().out
    return code, json.loads(out.strip().splitlines()[-1])


def count_tracebacks(text: str) -> int:
    return text.count("Traceback (most recent call last)")


def inv(*args: str, env: dict | None = None, home: Path | None = None, timeout: float = 120):
    """The real `inv` command line, as a user types it."""
    full_env = {**os.environ, **(env or {})}
    if home:
        full_env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO,
                          capture_output=True, text=True, env=full_env, timeout=timeout)


# -- tallies -------------------------------------------------------------------------------------

TALLIES = {"fault": "fault scenarios", "bad_input": "bad inputs"}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "tally(kind): count this test in the end-of-run tally of its kind"
                   f" ({', '.join(TALLIES)})")


def pytest_collection_modifyitems(items):
    for item in items:
        marker = item.get_closest_marker("tally")
        if marker is not None:
            item.user_properties.append(("tally", marker.args[0]))


def _tally_rows(stats: dict) -> dict[str, dict[str, int]]:
    tests: dict[str, dict] = {}
    for reports in stats.values():
        for report in reports:
            props = getattr(report, "user_properties", None)
            kind = next((v for k, v in props or () if k == "tally"), None)
            if kind is None or not hasattr(report, "when"):
                continue
            test = tests.setdefault(report.nodeid, {"kind": kind, "bad": False, "xfail": False,
                                                     "passed": False, "props": []})
            test["props"] = list(props)  # the latest phase carries every property so far
            if report.failed:
                test["bad"] = True
            if report.when == "call":
                test["passed"] = report.passed
                test["xfail"] = hasattr(report, "wasxfail") and report.skipped
    rows: dict[str, dict[str, int]] = {}
    for test in tests.values():
        row = rows.setdefault(test["kind"], {"tried": 0, "survived": 0, "exit2": 0, "xfail": 0,
                                             "tracebacks": 0})
        row["tried"] += 1
        ok = test["passed"] and not test["bad"]
        row["survived"] += ok
        exits = [v for k, v in test["props"] if k == "exit"]
        row["exit2"] += ok and bool(exits) and all(code == 2 for code in exits)
        row["xfail"] += test["xfail"]
        row["tracebacks"] += sum(v for k, v in test["props"] if k == "tracebacks")
    return rows


def pytest_terminal_summary(terminalreporter):
    rows = _tally_rows(terminalreporter.stats)
    if not rows:
        return
    terminalreporter.section("tallies")
    for kind, title in TALLIES.items():
        row = rows.get(kind)
        if row is None:
            continue
        middle = ("survived with nothing lost" if kind == "fault" else "clean exit 2")
        count = row["survived"] if kind == "fault" else row["exit2"]
        line = f"{title}: tried {row['tried']}, {middle} {count}"
        if row["xfail"]:
            line += f", known defects (strict xfail) {row['xfail']}"
        terminalreporter.write_line(f"{line}, tracebacks {row['tracebacks']}")
