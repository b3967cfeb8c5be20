"""Split a Cypher or SQL script into statements at ``;`` outside quotes, comments and dollar quotes.

Cypher: ``'…'`` and ``"…"`` strings with backslash escapes, ```…``` identifiers, ``//`` and ``/* */``
comments. SQL: ``'…'`` strings (``''`` escapes), ``"…"`` identifiers, ``--`` and ``/* */`` comments,
and ``$tag$ … $tag$`` bodies. Statements holding only comments are dropped.
"""

from __future__ import annotations

import re
from typing import Literal

Dialect = Literal["cypher", "sql"]

_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(text: str, dialect: Dialect) -> list[str]:
    """The statements of ``text`` in order, each stripped, without the terminating ``;``."""
    line_comment = "//" if dialect == "cypher" else "--"
    quotes = "'\"`" if dialect == "cypher" else "'\""
    out: list[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if text.startswith(line_comment, i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c in quotes:
            i = _skip_quoted(text, i, backslash=dialect == "cypher" and c != "`")
        elif dialect == "sql" and c == "$" and (m := _DOLLAR_TAG.match(text, i)):
            end = text.find(m.group(0), m.end())
            i = n if end < 0 else end + len(m.group(0))
        elif c == ";":
            _keep(out, text[start:i], line_comment)
            start = i = i + 1
        else:
            i += 1
    _keep(out, text[start:], line_comment)
    return out


def _skip_quoted(text: str, i: int, backslash: bool) -> int:
    quote = text[i]
    i += 1
    while i < len(text):
        c = text[i]
        if backslash and c == "\\":
            i += 2
            continue
        if c == quote:
            if text.startswith(quote * 2, i):  # doubled quote escapes itself
                i += 2
                continue
            return i + 1
        i += 1
    return i


def _keep(out: list[str], statement: str, line_comment: str) -> None:
    stripped = statement.strip()
    if strip_comments(stripped, line_comment).strip():
        out.append(stripped)


def strip_comments(text: str, line_comment: str) -> str:
    """``text`` without whole-line comments and ``/* */`` blocks (used to drop comment-only statements)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith(line_comment))
