"""The package's shape: no import cycles, no reads of undeclared settings, every room documented.

Imports are read from the source (``ast``), including imports inside functions: a lazy import hides a
cycle from the interpreter, not from the reader."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from wavegraph.settings import Settings

SRC = Path(__file__).resolve().parents[2] / "src" / "wavegraph"
ROOT = SRC.parent.parent


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The wavegraph modules ``path`` imports (``from pkg import mod`` counts as importing ``pkg.mod``)."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: not an import at run time
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("wavegraph"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wavegraph"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m in known}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), plus self-imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def package_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    graph = {}
    for name, path in mods.items():
        deps = imports_of(path, known)
        # a package's __init__ importing its own submodules is not a cycle worth reporting
        graph[name] = {
            d for d in deps if d != name and not (path.name == "__init__.py" and d.startswith(name + "."))
        }
    return graph


def test_the_package_has_no_import_cycles() -> None:
    assert cycles(package_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_pure_algorithm_rooms_import_no_service_client() -> None:
    """``processors/asr`` and ``processors/graph`` are pure: no Kafka, database or HTTP client."""
    clients = ("aiokafka", "asyncpg", "neo4j", "redis", "starlette", "httpx")
    offenders = []
    for room in ("processors/asr", "processors/graph"):
        for path in (SRC / room).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                offenders += [f"{path.relative_to(SRC)}: {n}" for n in names if n.split(".")[0] in clients]
    assert offenders == []


def test_benches_may_use_load_tests_but_not_the_other_way() -> None:
    graph = package_graph()
    back = [
        (m, d)
        for m, deps in graph.items()
        if m.startswith("wavegraph.loadtest")
        for d in deps
        if d.startswith("wavegraph.bench")
    ]
    assert back == []


def _declared(model: type, path: list[str]) -> bool:
    """``settings.a.b`` names a declared field (or a property/method of the model it reaches)."""
    for part in path:
        fields = getattr(model, "model_fields", {})
        if part in fields:
            annotation = fields[part].annotation
            model = annotation if isinstance(annotation, type) else object
        else:
            return hasattr(model, part)
    return True


SETTING = re.compile(r"\bsettings\.((?:[a-z_]+\.)*[a-z_]+)\b")


def test_no_module_reads_a_setting_that_settings_does_not_declare() -> None:
    unknown = []
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        unknown += [
            f"{path.relative_to(SRC)}: getattr on settings"
            for _ in re.finditer(r"getattr\(\s*settings\.", text)
        ]
        for m in SETTING.finditer(text):
            chain = m.group(1).split(".")
            if chain[0] in Settings.model_fields and not _declared(Settings, chain[:2]):
                unknown.append(f"{path.relative_to(SRC)}: settings.{'.'.join(chain[:2])}")
    assert unknown == []


def test_every_room_is_on_the_map() -> None:
    """``docs/architecture.md`` names every folder of the package (keep it true)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rooms = sorted({str(p.parent.relative_to(SRC)) for p in SRC.rglob("__init__.py") if p.parent != SRC})
    missing = [room for room in rooms if f"{room}/" not in text]
    assert missing == []


@pytest.mark.parametrize("room", ["processors/edges", "processors/audio", "processors/graph_job"])
def test_each_pipeline_runs_through_the_shared_helper(room: str) -> None:
    assert "run_pipeline(" in (SRC / room / "pipeline.py").read_text()
