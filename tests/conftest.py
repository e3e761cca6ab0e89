"""The fault / bad-input tallies printed at the end of a run (here, at the root, so a plain
`pytest` loads the hook in the main process, under xdist too).

A test marked `@pytest.mark.tally("fault")` or `("bad_input")` is counted from its reports'
outcome and `user_properties`: "tracebacks" (how many tracebacks the CLI printed) and "exit"
(each exit code it returned), recorded by the test with `record_property`.
"""

from __future__ import annotations

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
