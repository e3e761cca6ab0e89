"""SSH to a farm host with Fabric, its host key pinned, and run commands on it.

Fabric's default policy adds unknown host keys (fabric#2071); here the client is given the
node's pinned keys (from its guest attributes) and a rejecting policy, so an unknown or changed
key ends the connection before any command runs. There is no switch to turn that off.

A private node (no external address) is reached through the farm's bastion: a pinned
connection to the bastion, whose sshd opens the `direct-tcpip` channel to the node's internal
address; the node's own keys are pinned on that channel too. This machine never connects to
an internal address itself.
"""

from __future__ import annotations

import base64
import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import paramiko
from fabric import Config, Connection

from ..runner import Cancel
from .cache import Host, fingerprint

CONNECT_TIMEOUT = 10.0
BACKOFF_MAX = 5.0


class Unreachable(Exception):
    """No working SSH session: refused, timed out, authentication failed, or connection lost."""


class HostKeyRefused(Exception):
    """The host presented a key other than the pinned one: possibly not the farm's VM."""

    def __init__(self, host: Host, presented: paramiko.PKey):
        self.host, self.presented = host, presented
        pinned = ", ".join(f"{kind} {fingerprint(blob)}" for kind, blob in host.ordered_keys())
        super().__init__(
            f"host key of {host.node} ({host.vm} at {host.address}) does not match: it"
            f" presented {presented.get_name()} {fingerprint(presented.get_base64())}, the VM's"
            f" guest attributes pin {pinned}. Refused; nothing was run. If the VM was"
            f" re-created, its new keys are picked up automatically; otherwise something else"
            f" answers at {host.address}.")


@dataclass
class Output:
    code: int
    stdout: str
    stderr: str


def load_key(path: str) -> paramiko.PKey:
    """The farm's private key, parsed once per run (keys.py has already checked it)."""
    return paramiko.PKey.from_path(path)


def _pinned_client(conn: Connection, host: Host) -> None:
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    keys = conn.client.get_host_keys()
    keys.clear()
    for kind, blob in host.ordered_keys():
        keys.add(host.address, kind, paramiko.PKey.from_type_string(kind, base64.b64decode(blob)))


class _ThroughBastion(Connection):
    """A connection through a gateway connection, which it closes with itself (Fabric's
    close leaves the gateway open)."""

    def close(self) -> None:
        super().close()
        if isinstance(self.gateway, Connection):
            self.gateway.close()


def connection(host: Host, user: str, pkey: paramiko.PKey,
               timeout: float = CONNECT_TIMEOUT, gateway: Host | None = None) -> Connection:
    """A pinned connection to `host`, through a pinned one to `gateway` (the farm's bastion)
    when given: then the gateway's sshd, not this machine, connects to `host.address`."""
    config = Config(overrides={"load_ssh_configs": False})
    kind = Connection
    extra = {}
    if gateway is not None:
        kind = _ThroughBastion
        extra = {"gateway": connection(gateway, user, pkey, timeout)}
    conn = kind(host.address, user=user, port=22, config=config,
                connect_timeout=int(max(1, timeout)),
                connect_kwargs={"pkey": pkey, "look_for_keys": False,
                                "allow_agent": False, "banner_timeout": timeout,
                                "auth_timeout": timeout}, **extra)
    _pinned_client(conn, host)
    return conn


def _why(e: BaseException) -> str:
    if isinstance(e, paramiko.AuthenticationException):
        return "authentication failed (is the farm key in the VM's ssh-keys metadata?)"
    if isinstance(e, ConnectionRefusedError | paramiko.ssh_exception.NoValidConnectionsError):
        return "connection refused (sshd not up yet?)"
    if isinstance(e, socket.timeout | TimeoutError):
        return "timed out (firewall rule or source range?)"
    return f"{type(e).__name__}: {e}".rstrip(": ")


def open_connection(host: Host, user: str, pkey: paramiko.PKey, cancel: Cancel,
                    wait_seconds: float, progress: Callable[[str], None],
                    timeout: float = CONNECT_TIMEOUT, gateway: Host | None = None
                    ) -> Connection:
    """Connect (through `gateway`, the bastion, for a private node), retrying with backoff
    while sshd (or the account) is not ready yet, up to `wait_seconds`. A wrong host key, the
    bastion's or the node's, is never retried."""
    deadline = time.monotonic() + wait_seconds
    delay, said = 0.25, ""
    while True:
        cancel.check()
        conn = connection(host, user, pkey, timeout, gateway)
        try:
            conn.open()
            return conn
        except paramiko.BadHostKeyException as e:
            conn.close()
            wrong = gateway if gateway is not None and e.hostname == gateway.address else host
            raise HostKeyRefused(wrong, e.key) from None
        except paramiko.SSHException as e:
            conn.close()
            if "not found in known_hosts" in str(e):  # no pinned key of the offered type
                raise Unreachable(f"{host.node}: the host offered no key type that is pinned"
                                  f" ({', '.join(host.host_keys)}); refused") from None
            why = _why(e)
        except (OSError, EOFError) as e:
            conn.close()
            why = _why(e)
        if time.monotonic() + delay > deadline:
            via = f" through bastion {gateway.node}" if gateway is not None else ""
            raise Unreachable(f"no SSH to {host.node} at {host.address}{via} after"
                              f" {wait_seconds:.0f} s: {why}")
        if why != said:
            progress(f"waiting for SSH: {why}")
            said = why
        cancel.sleep(delay)
        delay = min(delay * 2, BACKOFF_MAX)


def sudo(conn: Connection, script: str, timeout: float | None = None,
         stdin: str | None = None) -> Output:
    """Run a shell script as root (the farm user has passwordless sudo, as on GCE)."""
    command = f"sudo -n env DEBIAN_FRONTEND=noninteractive sh -c {shlex.quote(script)}"
    return run(conn, command, timeout, stdin)


def run(conn: Connection, command: str, timeout: float | None = None,
        stdin: str | None = None) -> Output:
    """One command over the connection; a lost connection is Unreachable, not a failure."""
    import io

    try:
        result = conn.run(command, hide=True, warn=True, pty=False, timeout=timeout,
                          in_stream=io.StringIO(stdin) if stdin is not None else False)
    except (paramiko.SSHException, OSError, EOFError) as e:
        raise Unreachable(f"connection to {conn.host} lost: {_why(e)}") from None
    except Exception as e:  # invoke's CommandTimedOut, and a dead transport's odd errors
        if type(e).__name__ == "CommandTimedOut":
            raise Unreachable(f"{conn.host}: no answer within {timeout:.0f} s") from None
        raise
    return Output(result.exited, result.stdout, result.stderr)
