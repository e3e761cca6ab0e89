"""Ctrl-C in a task's first seconds, while Python is still importing the Compute Engine client
(about 2-5 s here), ends like a Ctrl-C later: exit 130 and the message, never Invoke's bare
exit 1."""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from .conftest import REPO

# A module imported only while a task's own module is being imported, not by Invoke or by
# tasks.py: PYTHONPROFILEIMPORTTIME logs each import as it completes, so seeing it means the
# task's import is under way and has seconds to go (the client's generated types follow).
MARKER = "google.api_core"


def interrupt_while_importing(*task: str) -> subprocess.CompletedProcess:
    # SIGINT as a terminal delivers it: a shell's background job (`pytest &`) hands its
    # children SIGINT ignored, and Python then never raises KeyboardInterrupt at all.
    proc = subprocess.Popen([sys.executable, "-m", "invoke", *task], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stderr is not None
    # Read the pipe itself, in chunks: a line-buffered reader can hold the marker in its own
    # buffer while select() waits on the empty pipe, and the task runs to its end meanwhile.
    # And the smallest pipe: the task can log only a page of imports past what is read here.
    fd = proc.stderr.fileno()
    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 4096)
    seen, deadline = b"", time.monotonic() + 60
    while MARKER.encode() not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    assert MARKER.encode() in seen, "the task never imported the client library"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out,
                                       seen.decode(errors="replace") + err)


@pytest.mark.parametrize("task", ["vms", "destroy", "status", "provision"])
def test_ctrl_c_while_the_task_is_still_importing_exits_130_with_the_message(inventory, task):
    done = interrupt_while_importing(task, "-i", str(inventory), "--json")
    assert done.returncode == 130, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["error"].startswith("interrupted")
    assert "Traceback" not in done.stderr
