"""`--secret` and `--ssh`, checked here before anything runs: a secret whose file or variable is
missing, or `--ssh default` with no agent, is bad input (exit 2), not a build that fails half
way with a pushed platform or two behind it.

The values themselves are never read here. buildx reads them on this machine when the build
starts and hands them to the node's BuildKit over the build session: BuildKit mounts a secret
on a tmpfs for the one RUN step that asks for it, and forwards the agent's socket the same way,
so neither reaches the node's disk, the build cache, the image or a log. Only the option as
given (an id and a path or a variable's name) is on a command line.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import UserError


def _fields(value: str) -> dict[str, str]:
    return {key: val for key, _, val in (part.partition("=") for part in value.split(","))}


def check_secret(value: str, what: str = "--secret") -> None:
    """`id=ID,src=PATH` (or `source=`), `id=ID,env=VAR`, `type=env,id=VAR`, as buildx reads
    them: the file must be readable, the variable set."""
    fields = _fields(value)
    sid = fields.get("id", "")
    src = fields.get("src") or fields.get("source")
    env = fields.get("env") or (sid if fields.get("type") == "env" else "")
    if not sid or not (src or env) or fields.get("type", "file") not in ("file", "env"):
        raise UserError(f"{what} {value!r}: not id=ID,src=FILE or id=ID,env=VARIABLE. Fix:"
                        " e.g. --secret id=npmrc,src=$HOME/.npmrc, or --secret"
                        " id=token,env=GITHUB_TOKEN.")
    if src:
        path = Path(os.path.expanduser(src))
        if not path.is_file() or not os.access(path, os.R_OK):
            raise UserError(f"{what} id={sid}: its file {src} is missing or unreadable."
                            f" Fix: create it, or point src= at the file holding secret {sid}.")
    elif env not in os.environ:
        raise UserError(f"{what} id={sid}: the variable {env} is not set here. Fix: export"
                        f" {env} before the build, or use src=FILE.")


def check_ssh(value: str, what: str = "--ssh") -> None:
    """`default` (the running ssh-agent, $SSH_AUTH_SOCK) or `ID=PATH[,PATH...]` (a socket or
    key file each): buildx forwards it to the node for `RUN --mount=type=ssh`."""
    sid, _, paths = value.partition("=")
    if not sid:
        raise UserError(f"{what} {value!r}: not default or ID=PATH. Fix: e.g. --ssh default"
                        " (the running ssh-agent), or --ssh github=$HOME/.ssh/id_ed25519.")
    if not paths:
        sock = os.environ.get("SSH_AUTH_SOCK", "")
        if not sock or not _is_socket(sock):
            raise UserError(f"{what} {sid}: no ssh-agent answers here (SSH_AUTH_SOCK is"
                            f" {'unset' if not sock else 'not a socket: ' + sock}). Fix: start"
                            " one and add the key (eval $(ssh-agent); ssh-add KEY), or give"
                            f" the key itself: --ssh {sid}=PATH.")
        return
    for path in paths.split(","):
        if not Path(os.path.expanduser(path)).exists():
            raise UserError(f"{what} {sid}={paths}: {path} does not exist. Fix: name an"
                            " agent's socket or a private key file.")


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False
