"""The benches that need no lab, each run once with --quick (tests/benches.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..benches import BENCHES, needs_lab, run_quick


@pytest.mark.parametrize("bench", [b for b in BENCHES if not needs_lab(b)],
                         ids=lambda b: b.name)
def test_bench_runs_quick_and_prints_its_figures(bench: Path):
    run_quick(bench, timeout=300)
