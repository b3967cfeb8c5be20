"""Canonical bytes of database values, so that equal content always hashes to the same sha256."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import orjson


def _default(value: Any) -> Any:
    iso = getattr(value, "iso_format", None)  # neo4j.time types
    if callable(iso):
        return iso()
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return repr(value)


def canonical(value: Any) -> bytes:
    """JSON with sorted keys; temporal values as ISO strings, anything else by ``repr``."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=_default)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def sorted_sections(sections: Mapping[str, Iterable[str]]) -> str:
    """sha256 over every section name followed by its lines, sorted."""
    h = hashlib.sha256()
    for name in sorted(sections):
        h.update(f"[{name}]\n".encode())
        for line in sorted(sections[name]):
            h.update(line.encode())
            h.update(b"\n")
    return h.hexdigest()
