"""The shared Neo4j and PostgreSQL end up with every migration applied (other tests rely on them)."""

from __future__ import annotations

import pytest

from wavegraph.migrations import apply_all, info, validate
from wavegraph.settings import Settings

pytestmark = pytest.mark.services


def test_shared_databases_are_migrated_and_a_second_apply_is_a_no_op(services: Settings) -> None:
    apply_all(services)
    assert apply_all(services) == []


async def test_shared_databases_are_valid(services: Settings) -> None:
    apply_all_rows = await info(services)
    assert {r.state for r in apply_all_rows} == {"success"}
    assert await validate(services) == []
