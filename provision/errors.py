"""Errors a user can act on. Each carries its exit code; none should surface as a traceback."""

from __future__ import annotations

from collections.abc import Sequence


class UserError(Exception):
    """Bad input: exit 2, with one paragraph naming what is wrong and the fix."""

    exit_code = 2


def _sentence(problem: str, fix: str) -> str:
    """`problem. Fix: fix.` on one line, without doubling a closing `?` or `.`."""
    stop = "" if problem.endswith(("?", ".", "!")) else "."
    text = f"{problem}{stop} Fix: {fix}{'' if fix.endswith('.') else '.'}"
    return " ".join(text.split("\n"))


class FileError(UserError):
    """A file the user gave (a workload's manifests, a compose file) cannot be used:
    `FILE[:LINE]: problem. Fix: fix.`"""

    def __init__(self, file: str, line: int | None, problem: str, fix: str):
        self.file, self.line, self.problem, self.fix = file, line, problem, fix
        super().__init__(f"{f'{file}:{line}' if line else file}: {_sentence(problem, fix)}")


class InventoryError(UserError):
    def __init__(self, file: str, line: int | None, key: str | None, problem: str, fix: str):
        self.file, self.line, self.key, self.problem, self.fix = file, line, key, problem, fix
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key + ': ' if key else ''}{_sentence(problem, fix)}")


class KeyFileError(UserError):
    """The farm's SSH key pair (ssh.private_key) is unusable: `PATH: problem. Fix: fix.`"""

    def __init__(self, path: str, problem: str, fix: str):
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{path}: {_sentence(problem, fix)}")


class CredentialsError(UserError):
    pass


class DockerError(Exception):
    """A docker command failed (exit 1, the cause in the recap); `output` is what it said."""

    def __init__(self, args: Sequence[str], code: int, output: str):
        self.command = list(args)
        self.code, self.output = code, output.strip()
        super().__init__(f"`docker {' '.join(args)}` failed (exit {code}): {self.output[-800:]}")
