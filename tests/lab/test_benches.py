"""The benches that need the lab, each run once with --quick (tests/benches.py), in the lab
the other lab tests share; each provisions and destroys its own farms in its own projects."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..benches import BENCHES, needs_lab, run_quick

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.mark.parametrize("bench", [b for b in BENCHES if needs_lab(b)], ids=lambda b: b.name)
def test_lab_bench_runs_quick_and_prints_its_figures(lab, bench: Path):
    run_quick(bench, timeout=900)
