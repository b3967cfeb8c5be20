"""The perf profile helper: parsing ``perf report`` output, grouping symbols, and a real recording."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys

import pytest

from wavegraph.bench.perf_profile import PerfRecording, categorise, parse_report

# The shape of `perf report --stdio --no-children --sort symbol -n -q`, with a call-chain block and the
# trailing columns perf adds for a recording made with -g (both must be skipped / cut off).
REPORT = """\
    30.80%         17381  [.] HalfvecInnerProductF16c                    -      -
            |
            ---0
               0x10002000041d7

    14.27%          8053  [.] btfloat8fastcmp                            -      -
    11.39%          6428  [.] qsort_ssup
     8.89%          5015  [.] GetScanItems
     5.92%          3340  [.] hash_search_with_hash_value
     4.31%          2432  [.] pg_detoast_datum
     1.35%           762  [k] exc_page_fault
     1.06%           598  [.] __memset_avx512_unaligned_erms
     0.52%           293  [.] halfvec_negative_inner_product
     0.40%           226  [.] 0x00007f0a1b2c3d4e
"""


def test_report_lines_become_symbols_and_groups() -> None:
    profile = parse_report(REPORT)
    assert profile.samples == 17381 + 8053 + 6428 + 5015 + 3340 + 2432 + 762 + 598 + 293 + 226
    assert profile.symbols[0] == ("HalfvecInnerProductF16c", pytest.approx(0.308))
    assert [name for name, _ in profile.symbols][:3] == [
        "HalfvecInnerProductF16c",
        "btfloat8fastcmp",
        "qsort_ssup",
    ]
    groups = profile.groups
    assert groups["distance"] == pytest.approx(0.3080 + 0.0052)
    assert groups["sort"] == pytest.approx(0.1427 + 0.1139)
    assert groups["index scan"] == pytest.approx(0.0889)
    assert groups["buffers"] == pytest.approx(0.0592)
    assert groups["tuples"] == pytest.approx(0.0431)
    assert groups["kernel"] == pytest.approx(0.0135)
    assert groups["memory"] == pytest.approx(0.0106)
    assert groups["other"] == pytest.approx(0.0040)
    assert list(groups) == sorted(groups, key=lambda g: -groups[g])  # largest first
    as_json = profile.as_json(top=2)
    assert as_json["top"] == [["HalfvecInnerProductF16c", 0.308], ["btfloat8fastcmp", 0.1427]]


def test_categories() -> None:
    assert categorise("vector_l2_squared_distance") == "distance"
    assert categorise("tuplesort_puttupleslot") == "sort"  # "sort" before "slot"
    assert categorise("heap_form_minimal_tuple") == "tuples"
    assert categorise("PinBuffer") == "buffers"
    assert categorise("clear_page_erms", kernel=True) == "kernel"
    assert categorise("ExecInterpExpr") == "other"
    assert parse_report("# header only\n\n").samples == 0


@pytest.mark.skipif(shutil.which("perf") is None, reason="Linux perf is not installed (Debian: linux-perf)")
def test_a_real_recording_sees_where_a_process_spends_its_time() -> None:
    """perf attached to a child that sorts arrays in a loop: most of its samples are numpy's sort kernels
    (their names vary with numpy's version and the CPU: SIMD quicksort partitions, timsort merges)."""
    busy = (
        "import numpy as np, time\n"
        "x = np.random.default_rng(0).random(200_000)\n"
        "end = time.monotonic() + 30\n"
        "while time.monotonic() < end:\n"
        "    np.sort(x, kind='quicksort')\n"
    )
    child = subprocess.Popen([sys.executable, "-c", busy])

    async def record() -> PerfRecording:
        async with PerfRecording([child.pid]) as recording:
            await asyncio.sleep(2.0)
        return recording

    try:
        recording = asyncio.run(record())
    finally:
        child.kill()
        child.wait()
    if recording.profile is None and "permission" in (recording.unavailable or "").lower():
        pytest.skip(f"perf may not attach here: {recording.unavailable}")
    assert recording.profile is not None, recording.unavailable
    assert recording.profile.samples > 500  # ~999 Hz for 2 s
    top, share = recording.profile.symbols[0]
    assert share > 0.5 and any(word in top.lower() for word in ("sort", "merge", "partition")), top
    assert sum(recording.profile.groups.values()) == pytest.approx(1.0, abs=0.05)  # every line parsed


def test_without_perf_the_recording_says_why() -> None:
    async def record() -> PerfRecording:
        async with PerfRecording([1], perf="/nonexistent/perf") as recording:
            pass
        return recording

    recording = asyncio.run(record())
    assert recording.profile is None
    assert "not installed" in (recording.unavailable or "")
    with pytest.raises(ValueError, match="at least one pid"):
        PerfRecording([])
