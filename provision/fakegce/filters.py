"""The `filter` query parameter of Compute Engine list calls, evaluated on resource JSON.

Two dialects, as on GCE: AIP-160 (`labels.app = "x" AND (status = RUNNING OR status = STAGING)`,
operators `= != < > <= >= :`, `:*` for "has key") and the legacy regex form: one bare
`name eq 'web-.*'` (or `ne`), or parenthesised terms side by side, all of which must hold:
`(status eq RUNNING) (name ne "p.*")`. Values are quoted or bare; a regex must match the whole
value. The two dialects must not be mixed. See docs/compute-engine.md, "Filters".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import InvalidField

Predicate = Callable[[dict], bool]
Token = tuple[str, str]  # (kind, text): kind is a TOKEN group name
_Ordered = TypeVar("_Ordered", str, float)

TOKEN = re.compile(r"""\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>!=|<=|>=|=|<|>|:)
                      |(?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<word>[^\s()=!<>:"']+))""",
                   re.X)


QUOTED = re.compile(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'""")
LEGACY_OP = re.compile(r"(?:^|[\s(])(?:eq|ne)\s")


def _bad(text: str) -> InvalidField:
    return InvalidField("filter", text, "Invalid list filter expression.")


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = TOKEN.match(text, pos)
        if not m or m.lastgroup is None:  # every alternative is a named group
            raise _bad(text)
        kind = m.lastgroup
        val = m.group(kind)
        if kind == "str":
            val = re.sub(r"\\(.)", r"\1", val[1:-1])
        out.append((kind, val))
        pos = m.end()
    return out


def _field(resource: dict, path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _order(a: _Ordered, op: str, e: _Ordered) -> bool:
    return {"=": a == e, "!=": a != e, "<": a < e, ">": a > e, "<=": a <= e, ">=": a >= e}[op]


def _compare(actual: object, op: str, expected: str) -> bool:
    if actual is None:
        return op == "!="
    if op == ":":
        return expected == "*" or expected.lower() in _text(actual).lower()
    a, e = _text(actual), expected
    try:
        a_num, e_num = float(a), float(e)
    except ValueError:
        return _order(a, op, e)
    return _order(a_num, op, e_num)


LEGACY_TERM = re.compile(r"\s*([\w.]+)\s+(eq|ne)\s+(.+?)\s*", re.S)


def _legacy_term(term: str, text: str) -> Predicate:
    m = LEGACY_TERM.fullmatch(term)
    if not m:
        raise _bad(text)
    path, op, raw = m.groups()
    if len(raw) > 1 and raw[0] in "'\"" and raw[-1] == raw[0]:
        raw = raw[1:-1]
    try:
        regex = re.compile(raw)
    except re.error:
        raise _bad(text) from None
    want = op == "eq"
    return lambda r: (regex.fullmatch(_text(_field(r, path) or "")) is not None) == want


def _legacy_groups(text: str) -> list[str]:
    """The insides of `(a eq x) (b ne "y(z)")`: balanced parentheses, quotes respected."""
    groups: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        if text[i] != "(":
            raise _bad(text)
        depth, j = 0, i
        quote: str | None = None
        while j < n:
            c = text[j]
            if quote:
                if c == "\\":
                    j += 1
                elif c == quote:
                    quote = None
            elif c in "'\"" and text[j - 1].isspace():  # a quote opens a value only
                quote = c
            elif c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if j >= n:
            raise _bad(text)
        groups.append(text[i + 1:j])
        i = j + 1
    return groups


def _legacy(text: str) -> Predicate:
    if not text.lstrip().startswith("("):
        return _legacy_term(text, text)
    terms = [_legacy_term(group, text) for group in _legacy_groups(text)]
    if not terms:
        raise _bad(text)
    return lambda r: all(t(r) for t in terms)


class _Parser:
    def __init__(self, text: str):
        self.text, self.toks, self.i = text, _tokens(text), 0

    def peek(self) -> tuple[str, str] | tuple[None, None]:
        return self.toks[self.i] if self.i < len(self.toks) else (None, None)

    def take(self) -> tuple[str, str] | tuple[None, None]:
        tok = self.peek()
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        pred = self.expr()
        if self.i != len(self.toks):
            raise _bad(self.text)
        return pred

    def expr(self) -> Predicate:
        # OR binds tighter than AND in AIP-160; implicit juxtaposition means AND.
        terms = [self.disjunction()]
        while True:
            kind, val = self.peek()
            if kind == "word" and val == "AND":
                self.take()
            elif kind not in ("lp", "word", "str"):
                break
            terms.append(self.disjunction())
        return lambda r: all(t(r) for t in terms)

    def disjunction(self) -> Predicate:
        terms = [self.term()]
        while self.peek() == ("word", "OR"):
            self.take()
            terms.append(self.term())
        return lambda r: any(t(r) for t in terms)

    def term(self) -> Predicate:
        kind, val = self.take()
        if kind == "word" and val == "NOT":
            inner = self.term()
            return lambda r: not inner(r)
        if kind == "lp":
            inner = self.expr()
            if self.take()[0] != "rp":
                raise _bad(self.text)
            return inner
        if kind != "word" or val is None:  # a token's text is None only past the end
            raise _bad(self.text)
        op_kind, op = self.take()
        value_kind, value = self.take()
        if op_kind != "op" or value_kind not in ("word", "str") or op is None or value is None:
            raise _bad(self.text)
        path = val
        return lambda r: _compare(_field(r, path), op, value)


def compile_filter(text: str | None) -> Predicate:
    if not text or not text.strip():
        return lambda r: True
    if LEGACY_OP.search(QUOTED.sub("''", text)):  # an eq/ne outside quotes: the regex dialect
        return _legacy(text)
    return _Parser(text).parse()
