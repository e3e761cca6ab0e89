"""Registry paths a test can slow down or lose, on loopback only, both to the lab registry:

- `SlowProxy`: on this machine, 127.0.0.1:PORT -> the lab registry (127.0.0.1:5000), each
  connection held a while first (what `inv build` runs here: the merge, the read-back);
- `NodeForward`: on a lab VM, its own 127.0.0.1:PORT -> the lab registry's socket, as the VM's
  127.0.0.1:5000 is (what the node's engine pushes to), optionally held a while too.

Started on the same PORT, a tag `127.0.0.1:PORT/...` names one registry for the nodes and for
this machine, and the test decides when it is slow or lost.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
import threading

from provision.lab.services import REGISTRY


class SlowProxy:
    """127.0.0.1:port on this machine to the lab registry, each connection `delay` seconds
    late; `lose()` closes the port and every connection through it."""

    def __init__(self, delay: float):
        self.delay = delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lost = threading.Event()
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.lost.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        if self.lost.wait(self.delay):
            return
        upstream = socket.create_connection(REGISTRY)
        self.sockets.append(upstream)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        _pipe(client, upstream)

    def lose(self) -> None:
        self.lost.set()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


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
            # socat 1.8 (Debian 13) splits an address at every colon: the inner one escaped
            inner = target.replace(":", "\\:")
            target = f'SYSTEM:"sleep {delay}; exec socat STDIO {inner}"'
        listen = (f"setsid socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork {target}"
                  " >/dev/null 2>&1 </dev/null & echo $!")
        self.pid = int(ssh(alias, f"sudo sh -c {shlex.quote(listen)}"))

    def lose(self) -> None:
        ssh(self.alias, f"sudo kill -- -{self.pid} 2>/dev/null || true")
