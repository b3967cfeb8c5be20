"""The migration tree: file names, versions, statement splitting, placeholders, checks (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavegraph.migrations import MigrationError
from wavegraph.migrations.discover import DEFAULT_LOCATION, discover, load_tree
from wavegraph.migrations.model import version_key
from wavegraph.migrations.split import split_statements
from wavegraph.settings import Settings


def test_versions_compare_as_integers() -> None:
    assert version_key("2025.07") == version_key("2025_7") == version_key("2025.7.0")
    assert version_key("2025.05.3") < version_key("2025.07") < version_key("2025.10")


def test_split_keeps_semicolons_inside_strings_comments_and_dollar_quotes() -> None:
    sql = (
        "SELECT ';' AS a; -- x; y\n"
        "CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql;\n"
        "-- only\n"
    )
    assert split_statements(sql, "sql") == [
        "SELECT ';' AS a",
        "-- x; y\nCREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql",
    ]
    cypher = "RETURN 'a;b' AS `x;y`; // c; d\nMATCH (n) /* e; f */ RETURN n;"
    assert split_statements(cypher, "cypher") == [
        "RETURN 'a;b' AS `x;y`",
        "// c; d\nMATCH (n) /* e; f */ RETURN n",
    ]


def test_project_tree(settings: Settings) -> None:
    tree = load_tree(DEFAULT_LOCATION, settings)
    neo4j = discover(tree, "neo4j")
    versions = [m.version for m in neo4j]
    assert versions == sorted(versions, key=version_key)  # new files may join; the order holds
    assert {"2025.05", "2025.07"} <= set(versions)
    assert all(m.undo_path is not None for m in neo4j)
    [haa] = [m for m in neo4j if m.version == "2025.07"]
    assert haa.undo_path is not None and haa.checks
    assert any(f"`vector.dimensions`: {settings.graph.embedding_dim}" in s for s in haa.statements)
    assert any("${rel_type}" in s for s in haa.statements)  # filled in when it runs
    postgres = discover(tree, "postgres")
    assert all(m.undo_path is not None for m in postgres)
    assert any(f"vector({settings.vector.dim})" in s for m in postgres for s in m.statements)


def test_bad_trees_are_named(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "neo4j").mkdir()
    bad = tmp_path / "neo4j" / "V1__x.cypher"
    bad.write_text("RETURN ${nope};")
    with pytest.raises(MigrationError, match="unknown placeholder"):
        discover(load_tree(tmp_path, settings), "neo4j")
    bad.write_text("RETURN 1;")
    (tmp_path / "neo4j" / "V1_0__y.cypher").write_text("RETURN 2;")
    with pytest.raises(MigrationError, match="same version"):
        discover(load_tree(tmp_path, settings), "neo4j")
