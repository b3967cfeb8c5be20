"""The per-tenant checksum of FAISS rows."""

from __future__ import annotations

import numpy as np

from wavegraph.processors.replay.vector_index import rows_checksum


def test_a_tenant_s_rows_in_any_order_and_other_tenants_do_not_count() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal((3, 8)).astype(np.float32)
    rows = [("a", "transcript", "x", v[0]), ("b", "transcript", "y", v[1]), ("a", "transcript", "z", v[2])]
    one = rows_checksum(rows, "a")
    assert one.counts == {"rows": 2} and one.store == "faiss"
    assert rows_checksum(list(reversed(rows)), "a") == one
    assert rows_checksum([*rows, ("b", "transcript", "w", v[0])], "a") == one
    moved = [(t, k, i, x + (0.01 if i == "z" else 0.0)) for t, k, i, x in rows]
    assert rows_checksum(moved, "a").digest != one.digest
    renamed = [(t, k, "q" if i == "x" else i, x) for t, k, i, x in rows]
    assert rows_checksum(renamed, "a").digest != one.digest
    assert rows_checksum(rows, "c").counts == {"rows": 0}
