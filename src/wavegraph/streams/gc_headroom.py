"""Room in the garbage collector's youngest generation for a whole batch while a processor runs.

A batch keeps a few tracked objects per record alive until its sinks have flushed (the consumer record
and its headers list, the event and its ``__dict__``): about 4,000 for 1,000 edge events. With CPython's
default threshold of 700 allocations, young collections run several times per batch, find every one of
those objects alive, and promote them, so the oldest generation keeps growing and is scanned in full
every few thousand events. Measured on ``wavegraph bench runtime``, that was more CPU time per event
than decoding and validating the event. With the threshold above what one batch allocates, a batch's
objects are freed by reference counting before a collection would have looked at them; collections still
run (reference cycles are still reclaimed), only less often.

The threshold is process-wide: :func:`gc_headroom` raises it for as long as a processor runs, never
lowers it, leaves it alone when the collector is disabled, and puts the old value back on the way out
unless someone else changed it meanwhile.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

OBJECTS_PER_RECORD = 20  # tracked allocations a record may cause before its batch ends, with margin


@contextmanager
def gc_headroom(max_batch: int) -> Iterator[int]:
    """Raise the youngest generation's threshold to ``OBJECTS_PER_RECORD * max_batch`` (if higher)
    while the block runs; yield the threshold in force."""
    young, middle, old = gc.get_threshold()
    wanted = OBJECTS_PER_RECORD * max_batch
    if not gc.isenabled() or young >= wanted:
        yield young
        return
    gc.set_threshold(wanted, middle, old)
    try:
        yield wanted
    finally:
        if gc.get_threshold() == (wanted, middle, old):
            gc.set_threshold(young, middle, old)
