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

FORM = ("Fix: write it as buildx does, e.g. --secret id=npmrc,src=$HOME/.npmrc, or --secret"
        " id=token,env=GITHUB_TOKEN.")


def check_secret(value: str, what: str = "--secret") -> None:
    """A secret as buildx reads it (`parseSecret` in buildx, then BuildKit's secrets store):
    keys type (file or env), id, src or source, env; `type=env` takes src as the variable;
    with neither src nor env, the variable named like the id if set, else the file of that
    name. The file must be readable, the variable set. Only the keys and the id are ever
    repeated (a mistyped option may hold the value itself)."""
    fields: dict[str, str] = {}
    for part in value.split(","):
        key, _, val = part.partition("=")
        fields[key.strip().lower()] = val
    unknown = sorted(set(fields) - {"type", "id", "src", "source", "env"})
    kind = fields.get("type", "file")
    sid = fields.get("id", "")
    if unknown or kind not in ("file", "env") or not sid:
        said = f"unknown key {', '.join(unknown)}" if unknown else \
            f"type {kind} is not file or env" if kind not in ("file", "env") else "no id"
        raise UserError(f"{what} with keys {', '.join(fields)}: {said}. {FORM}")
    src, env = fields.get("src") or fields.get("source") or "", fields.get("env", "")
    if kind == "env" and not env:
        src, env = "", src or sid
    if not src and not env:
        env, src = (sid, "") if sid in os.environ else ("", sid)
    if src:
        path = Path(src)
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
        if not Path(path).exists():
            raise UserError(f"{what} {sid}={paths}: {path} does not exist. Fix: name an"
                            " agent's socket or a private key file.")


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False
