"""The task list and every task's --help answer without importing a cloud library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = ("import sys, atexit; atexit.register(lambda: print('\\nCLOUD' if any("
         "m.startswith(('google.cloud', 'google.api_core')) for m in sys.modules) else"
         " '\\nCLEAN')); from invoke.main import program; program.run({argv!r})")


@pytest.mark.parametrize("argv", [["inv", "--list"], ["inv", "vms", "--help"],
                                  ["inv", "status", "--help"], ["inv", "destroy", "--help"],
                                  ["inv", "doctor", "--help"],
                                  ["inv", "configure", "--help"],
                                  ["inv", "provision", "--help"],
                                  ["inv", "register", "--help"],
                                  ["inv", "build", "--help"],
                                  ["inv", "check-arm", "--help"],
                                  ["inv", "fake", "--help"]])
def test_listing_and_help_import_no_cloud_library(argv):
    result = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("CLEAN")
    if "--help" in argv:
        assert "-i STRING, --inventory=STRING" in result.stdout or argv[1] == "fake"
