"""Find the migration files named by ``migrations/flyway.toml`` and parse them.

The tree follows Flyway's conventions so that Flyway (PostgreSQL) and Neo4j-Migrations (Neo4j) can read
it too: ``V<version>__<description>.sql|.cypher`` migrations, ``U<version>__<description>...`` undo
scripts, ``${name}`` placeholders, and a per-script ``<script>.conf`` holding
``executeInTransaction=false`` when a script cannot run in one transaction. Post-checks, which Flyway
has no notion of, live beside the script in ``V<version>__<description>.checks.toml``
(``[[check]] name, query, expect``); neither tool reads that suffix.

Where the tree is: ``location`` is a ``flyway.toml`` file, or a directory holding one, or a directory
with ``neo4j/`` and ``postgres/`` subdirectories. Locations in the config (``filesystem:<path>``) are
relative to the directory above the config file (the project root, from which Flyway is run with
``-configFiles=migrations/flyway.toml``).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from wavegraph.migrations.errors import MigrationError
from wavegraph.migrations.expand import RUNTIME_PLACEHOLDERS
from wavegraph.migrations.model import DBS, FILE_NAME, SUFFIX, Check, Db, Migration, version_key
from wavegraph.migrations.split import Dialect, split_statements
from wavegraph.settings import Settings

DEFAULT_LOCATION = Path("migrations")
CONFIG_NAME = "flyway.toml"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")


@dataclass(frozen=True)
class Tree:
    """Where each database's scripts live and the placeholder values substituted into them."""

    locations: dict[Db, Path]
    placeholders: dict[str, str] = field(default_factory=dict)
    config: Path | None = None


def settings_placeholders(settings: Settings) -> dict[str, str]:
    """Placeholders whose values come from the settings (they win over the config file's)."""
    return {
        "haa_dim": str(settings.graph.embedding_dim),
        "text_dim": str(settings.vector.dim),
        "ivfflat_lists": str(settings.vector.ivfflat_lists),
    }


def load_tree(location: Path | None, settings: Settings) -> Tree:
    """Read the config at ``location`` (default ``migrations/``)."""
    location = location or DEFAULT_LOCATION
    config = location if location.is_file() else location / CONFIG_NAME
    if not config.exists():
        if not location.is_dir():
            raise MigrationError(
                f"no migrations at {location} (expected {CONFIG_NAME} or neo4j/ and postgres/)"
            )
        return Tree({db: location / db for db in DBS}, settings_placeholders(settings))
    try:
        data = tomllib.loads(config.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise MigrationError(f"{config}: not valid TOML: {exc}") from exc
    root = config.absolute().parent.parent
    flyway = data.get("flyway", {})
    placeholders = {k: str(v) for k, v in flyway.get("placeholders", {}).items()}
    placeholders.update(settings_placeholders(settings))
    locations: dict[Db, Path] = {}
    for db in DBS:
        env = data.get("environments", {}).get(db, {}).get("flyway", {})
        entries = env.get("locations", flyway.get("locations", []))
        if len(entries) != 1 or not str(entries[0]).startswith("filesystem:"):
            raise MigrationError(f"{config}: environments.{db}.flyway.locations must be one filesystem: path")
        locations[db] = root / str(entries[0]).removeprefix("filesystem:")
    return Tree(locations, placeholders, config)


def discover(tree: Tree, db: Db) -> list[Migration]:
    """Every ``V`` migration of ``db`` in version order, with its undo script and post-checks."""
    folder = tree.locations[db]
    if not folder.is_dir():
        return []
    suffix = SUFFIX[db]
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.rglob(f"*{suffix}")):
        m = FILE_NAME.match(path.name)
        if m is None or m["suffix"] != suffix:
            raise MigrationError(f"{path}: not a migration name (V<version>__<description>{suffix})")
        slot = found.setdefault(m["version"], {})
        if m["prefix"] in slot:
            raise MigrationError(f"{path}: version {m['version']} also used by {slot[m['prefix']]}")
        slot[m["prefix"]] = path
    keys: dict[tuple[int, ...], str] = {}
    migrations = []
    for version, files in found.items():
        if "V" not in files:
            raise MigrationError(f"{files['U']}: undo script without a V{version} migration")
        if (other := keys.setdefault(version_key(version), version)) != version:
            raise MigrationError(f"{folder}: versions {other} and {version} are the same version")
        migrations.append(_parse(db, version, files["V"], files.get("U"), tree.placeholders))
    return sorted(migrations, key=lambda m: m.key)


def checksum(path: Path) -> str:
    """sha256 of the file with line endings normalised (a CRLF checkout keeps the same checksum)."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n").removeprefix(b"\xef\xbb\xbf")).hexdigest()


def substitute(text: str, placeholders: dict[str, str], where: Path) -> str:
    """Replace ``${name}``; an unknown name is an error naming the file."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) in RUNTIME_PLACEHOLDERS:
            return m.group(0)
        try:
            return placeholders[m.group(1)]
        except KeyError:
            raise MigrationError(f"{where}: unknown placeholder ${{{m.group(1)}}}") from None

    return _PLACEHOLDER.sub(one, text)


def _parse(db: Db, version: str, path: Path, undo: Path | None, placeholders: dict[str, str]) -> Migration:
    m = FILE_NAME.match(path.name)
    assert m is not None
    dialect: Dialect = "cypher" if db == "neo4j" else "sql"
    statements = split_statements(substitute(path.read_text(), placeholders, path), dialect)
    undo_statements: list[str] = []
    if undo is not None:
        undo_statements = split_statements(substitute(undo.read_text(), placeholders, undo), dialect)
    return Migration(
        db=db,
        version=version,
        description=m["description"].replace("_", " "),
        path=path,
        checksum=checksum(path),
        statements=tuple(statements),
        undo_path=undo,
        undo_statements=tuple(undo_statements),
        checks=_checks(path, placeholders),
        in_transaction=_in_transaction(path),
    )


def _checks(path: Path, placeholders: dict[str, str]) -> tuple[Check, ...]:
    sidecar = path.with_name(path.name.removesuffix(path.suffix) + ".checks.toml")
    if not sidecar.exists():
        return ()
    try:
        data = tomllib.loads(substitute(sidecar.read_text(), placeholders, sidecar))
    except tomllib.TOMLDecodeError as exc:
        raise MigrationError(f"{sidecar}: not valid TOML: {exc}") from exc
    checks = []
    for i, item in enumerate(data.get("check", [])):
        if not isinstance(item, dict) or not {"name", "query", "expect"} <= item.keys():
            raise MigrationError(f"{sidecar}: check #{i + 1} needs name, query and expect")
        checks.append(Check(str(item["name"]), str(item["query"]).strip().rstrip(";"), item["expect"]))
    return tuple(checks)


def _in_transaction(path: Path) -> bool:
    conf = path.with_name(path.name + ".conf")
    if not conf.exists():
        return True
    for line in conf.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "executeInTransaction":
            return value.strip().lower() != "false"
    return True
