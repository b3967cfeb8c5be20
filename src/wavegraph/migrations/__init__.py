"""Versioned, checksummed schema migrations for Neo4j and PostgreSQL (``wavegraph migrate``).

See ``docs/migrations.md``. The tree lives in ``migrations/`` (Flyway conventions); the history lives in
each database; every apply records content checksums before and after; a failure is rolled back
automatically (a failure that could not be undone is recorded as ``failed`` and blocks the database until
``repair``); ``dry_run`` rehearses everything on a throwaway instance.
"""

from wavegraph.migrations.api import apply, apply_all, info, open_target, repair, rollback, validate
from wavegraph.migrations.dryrun import DryRunReport, dry_run
from wavegraph.migrations.errors import MigrationError, MigrationFailed, RepairNeeded, ValidationFailed

__all__ = [
    "DryRunReport",
    "MigrationError",
    "MigrationFailed",
    "RepairNeeded",
    "ValidationFailed",
    "apply",
    "apply_all",
    "dry_run",
    "info",
    "open_target",
    "repair",
    "rollback",
    "validate",
]
