"""Build slots with a local shell standing in for the SSH hop to a node: the same scripts, the
real flock, and a holder killed as archfarm could be (SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from provision.buildx import slots

LOCAL = ["sh", "-c"]


def count(directory) -> int:
    out = subprocess.run([*LOCAL, slots.count_script(str(directory))], capture_output=True,
                         text=True, check=True).stdout
    return slots.parse_count(out)


def test_a_held_slot_counts_until_it_is_let_go(tmp_path):
    assert count(tmp_path / "s") == 0
    with slots.Slot(LOCAL, directory=str(tmp_path / "s")):
        assert count(tmp_path / "s") == 1
        with slots.Slot(LOCAL, directory=str(tmp_path / "s")):
            assert count(tmp_path / "s") == 2
        assert count(tmp_path / "s") == 1
    assert count(tmp_path / "s") == 0
    # each slot removed its own file; the gate's lock file stays
    assert [p.name for p in (tmp_path / "s").iterdir()] == [".gate"]


def test_a_holder_killed_outright_frees_its_slot(tmp_path):
    directory = str(tmp_path / "s")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from provision.buildx import slots\n"
        f"with slots.Slot(['sh', '-c'], directory={directory!r}):\n"
        "    print('in', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert holder.stdout is not None and holder.stdout.readline().strip() == "in"
    assert count(directory) == 1
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    deadline = time.monotonic() + 5
    while count(directory) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert count(directory) == 0


def test_no_slot_from_a_node_that_does_not_answer_is_an_error():
    with pytest.raises(slots.SlotError, match="gave no slot"):
        slots.Slot(["sh", "-c", "exit 255", "--"], timeout=2).__enter__()
    with pytest.raises(slots.SlotError, match="no answer from `sh -c sleep 5 --` within 1 s"):
        slots.Slot(["sh", "-c", "sleep 5", "--"], timeout=1).__enter__()


def test_the_reason_ssh_gave_is_the_errors_message():
    with pytest.raises(slots.SlotError, match=r"^Host key verification failed\.$"):
        slots.Slot(["sh", "-c", "echo 'Host key verification failed.' >&2; exit 255", "--"],
                   timeout=2).__enter__()


def test_a_holder_gone_silent_loses_its_slot_after_three_missed_beats(tmp_path):
    """A laptop asleep closes no connection: its heartbeat stops, and the node lets go."""
    directory = str(tmp_path / "s")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from provision.buildx import slots\n"
        f"with slots.Slot(['sh', '-c'], directory={directory!r}, heartbeat=0.3):\n"
        "    print('in', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "in"
        time.sleep(1.5)  # beating: held well past three beats
        assert count(directory) == 1
        holder.send_signal(signal.SIGSTOP)  # asleep, its pipe still open
        deadline = time.monotonic() + 5
        while count(directory) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert count(directory) == 0
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("text, n", [("3\n", 3), ("", 0), ("garbled", 0)])
def test_the_count_section_parses(text, n):
    assert slots.parse_count(text) == n


def test_a_node_full_to_its_capacity_says_busy_and_gives_no_slot(tmp_path):
    directory = str(tmp_path / "s")
    with slots.Slot(LOCAL, directory=directory, capacity=2):
        with slots.Slot(LOCAL, directory=directory, capacity=2):
            with pytest.raises(slots.Busy) as busy:
                slots.Slot(LOCAL, directory=directory, capacity=2).__enter__()
            assert busy.value.held == 2
            assert count(directory) == 2  # the refused one left nothing behind
        with slots.Slot(LOCAL, directory=directory, capacity=2):  # one freed: taken again
            assert count(directory) == 2


def test_runs_racing_for_the_last_slot_get_it_once(tmp_path):
    """Eight runs ask for a node's one slot at the same moment: exactly one gets it."""
    import threading

    directory, got, refused = str(tmp_path / "s"), [], []
    barrier, release = threading.Barrier(8), threading.Event()

    def ask() -> None:
        barrier.wait()
        try:
            with slots.Slot(LOCAL, directory=directory, capacity=1):
                got.append(1)
                release.wait(10)
        except slots.Busy:
            refused.append(1)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(got) + len(refused) < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    release.set()
    for t in threads:
        t.join()
    assert (len(got), len(refused)) == (1, 7)


def test_a_stale_slot_file_left_unlocked_is_not_counted_by_a_holder(tmp_path):
    directory = tmp_path / "s"
    directory.mkdir()
    (directory / "build.stale1").write_text("")  # a dropped session's, lock long gone
    with slots.Slot(LOCAL, directory=str(directory), capacity=1):  # not refused as busy
        assert not (directory / "build.stale1").exists()
