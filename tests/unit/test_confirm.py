"""The destroy prompt: Ctrl-C interrupts it at once, whichever thread the kernel hands the
signal to (a client library's thread is as likely as the main one)."""

from __future__ import annotations

import os
import pty
import signal
import threading
import time

import pytest

from provision import cli


@pytest.fixture
def terminal(monkeypatch):
    """stdin on a pseudo-terminal; returns the master side, where the user types."""
    master, slave = pty.openpty()
    with os.fdopen(slave, "r") as stdin:
        monkeypatch.setattr("sys.stdin", stdin)
        yield master
    os.close(master)


def test_ctrl_c_delivered_to_another_thread_interrupts_the_prompt(terminal):
    bystander_ready = threading.Event()
    stop = threading.Event()

    def bystander() -> None:  # a thread that, like the kernel may, receives the SIGINT
        bystander_ready.set()
        stop.wait(10)

    thread = threading.Thread(target=bystander, daemon=True)
    thread.start()
    bystander_ready.wait()

    answered = threading.Event()

    def interrupt_then_unblock() -> None:
        time.sleep(0.3)
        signal.pthread_kill(thread.ident, signal.SIGINT)
        if not answered.wait(2):
            os.write(terminal, b"n\n")  # only reached if the prompt ignored the Ctrl-C

    unblocker = threading.Thread(target=interrupt_then_unblock, daemon=True)
    unblocker.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            cli.confirm("Delete 2 VM(s)?")
        assert time.monotonic() - started < 1.5
    finally:
        answered.set()
        unblocker.join()
        stop.set()


@pytest.mark.parametrize("typed, answer", [(b"y\n", True), (b"yes\n", True), (b"\n", False),
                                           (b"n\n", False), (b"maybe\n", False)])
def test_the_prompt_takes_yes_only(terminal, typed, answer):
    os.write(terminal, typed)
    assert cli.confirm("Delete?") is answer
