"""How the Neo4j sink sorts failures: outage (retry, counts toward the breaker), data (dead letter),
fatal (stop). The exceptions are the driver's own classes, built from the status codes Neo4j sends
(``Neo4jError._hydrate_neo4j`` is how the driver turns a server failure into an exception)."""

from __future__ import annotations

import pytest
from neo4j.exceptions import Neo4jError, ServiceUnavailable, SessionExpired

from wavegraph.sinks.neo4j import classify


def server(code: str) -> Neo4jError:
    return Neo4jError._hydrate_neo4j(code=code, message="from the server")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ServiceUnavailable("connection refused"), "outage"),
        (SessionExpired("gone"), "outage"),
        (OSError("reset by peer"), "outage"),
        (TimeoutError(), "outage"),
        (server("Neo.TransientError.Transaction.DeadlockDetected"), "outage"),
        (server("Neo.DatabaseError.General.UnknownError"), "outage"),
        (server("Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration"), "outage"),
        (server("Neo.ClientError.Cluster.NotALeader"), "outage"),
        (server("Neo.ClientError.Statement.TypeError"), "data"),
        (server("Neo.ClientError.Schema.ConstraintValidationFailed"), "data"),
        (server("Neo.ClientError.Statement.ArgumentError"), "data"),
        (ValueError("Integer out of range"), "data"),  # what the driver raises when it cannot pack
        (OverflowError("int too big"), "data"),
        (server("Neo.ClientError.Security.Unauthorized"), "fatal"),
        (server("Neo.ClientError.Security.Forbidden"), "fatal"),
        (server("Neo.ClientError.Database.DatabaseNotFound"), "fatal"),
        (server("Neo.ClientError.General.ForbiddenOnReadOnlyDatabase"), "fatal"),
    ],
)
def test_every_failure_has_one_kind(exc: BaseException, kind: str) -> None:
    assert classify(exc) == kind
