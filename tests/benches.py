"""Every bench/*.py run once in its quick mode (`--quick`), so no bench rots unnoticed: it must
exit 0 and print its figures block. The figures themselves are never judged here (they are
measured by hand; bench/README.md has them).

A bench whose docstring starts with "Lab:" needs the running lab and is run by
tests/lab/test_benches.py; every other one by tests/integration/test_benches.py. A new
bench/*.py is picked up by one of the two (bench/_*.py are helpers, not benches).
"""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHES = sorted(p for p in (REPO / "bench").glob("*.py") if not p.name.startswith("_"))
FIGURES_START = "=== figures: "
FIGURES_END = "=== end of figures ==="


def needs_lab(bench: Path) -> bool:
    return (ast.get_docstring(ast.parse(bench.read_text())) or "").startswith("Lab:")


def has_figures(output: str) -> bool:
    """The block bench/_common.py prints: a start line, something, the end line."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(FIGURES_START)]
    ends = [i for i, line in enumerate(lines) if line == FIGURES_END]
    return bool(starts and ends and any(line.strip()
                                        for line in lines[starts[-1] + 1:ends[-1]]))


def tail(output: str, lines: int = 60) -> str:
    return "\n".join(output.splitlines()[-lines:])


def run_quick(bench: Path, timeout: float) -> None:
    """`python bench/X.py --quick` from the repository root, as bench/README.md runs it."""
    proc = subprocess.Popen([sys.executable, str(bench), "--quick"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # Ctrl-C, so its `finally` destroys what it made; killed only if that hangs too.
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
        pytest.fail(f"{bench.name} --quick still running after {timeout:.0f} s;"
                    f" its output ends:\n{tail(output)}")
    assert proc.returncode == 0, (f"{bench.name} --quick exited {proc.returncode};"
                                  f" its output ends:\n{tail(output)}")
    assert has_figures(output), (f"{bench.name} --quick printed no figures block;"
                                 f" its output ends:\n{tail(output)}")
