"""A registry path a test can slow down or lose, on loopback only: `NodeForward`, on a lab
VM, its own 127.0.0.1:PORT -> the lab registry's socket, as the VM's 127.0.0.1:5000 is (what
the node's engine pushes to), optionally held a while.
"""

from __future__ import annotations

import shlex
import subprocess


def ssh(alias: str, command: str, timeout: float = 60) -> str:
    """`command` on a registered node, through its ssh alias (the farm user, who has sudo)."""
    done = subprocess.run(["ssh", "-o", "BatchMode=yes", alias, command], capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


class NodeForward:
    """On the node behind `alias`, a socat from its 127.0.0.1:port to the lab registry's
    socket, each connection `delay` seconds late; `lose()` stops it (its process group: the
    listener and every connection's child)."""

    def __init__(self, alias: str, port: int, delay: float = 0):
        self.alias = alias
        target = "UNIX-CONNECT:/run/archfarm-registry.sock"
        if delay:
            target = f'SYSTEM:"sleep {delay}; exec socat STDIO {target}"'
        listen = (f"setsid socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork {target}"
                  " >/dev/null 2>&1 </dev/null & echo $!")
        self.pid = int(ssh(alias, f"sudo sh -c {shlex.quote(listen)}"))

    def lose(self) -> None:
        ssh(self.alias, f"sudo kill -- -{self.pid} 2>/dev/null || true")
