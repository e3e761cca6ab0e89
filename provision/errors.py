"""Errors a user can act on. Each carries its exit code; none should surface as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input: exit 2, with one paragraph naming what is wrong and the fix."""

    exit_code = 2


class InventoryError(UserError):
    def __init__(self, file: str, line: int | None, key: str | None, problem: str, fix: str):
        self.file, self.line, self.key, self.problem, self.fix = file, line, key, problem, fix
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {key + ': ' if key else ''}{problem}. Fix: {fix}.")


class CredentialsError(UserError):
    pass
