"""``docs/guarantees.md`` maps every promise to a test: each test it names must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")


def test_every_test_named_in_the_guarantees_exists() -> None:
    text = (ROOT / "docs" / "guarantees.md").read_text()
    refs = REFERENCE.findall(text)
    assert len(refs) >= 40, "the map lost most of its rows"
    missing = []
    for path, name in refs:
        file = ROOT / path
        if not file.is_file():
            missing.append(f"{path} (no such file)")
            continue
        names = {
            node.name
            for node in ast.walk(ast.parse(file.read_text()))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        if name not in names:
            missing.append(f"{path}::{name}")
    assert missing == []
