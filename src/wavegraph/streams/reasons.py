"""The fixed set of dead-letter reason codes.

A dead letter carries two reasons: the free text (``wg.dlq.reason``: field and problem, as precise as
possible) and one of the codes below (``wg.dlq.code``), which is also the ``reason`` label of
``wavegraph_dlq_events_total``. Free text never becomes a label, so hostile field names cannot create
unbounded Prometheus series; an unknown code is counted as ``other``.
"""

from __future__ import annotations

CODES = frozenset(
    {
        "empty",  # no record value where one is required
        "oversized",  # larger than runtime.max_event_bytes
        "bad_json",  # not JSON at all
        "invalid_event",  # a field fails validation (the free text names it)
        "bad_header",  # an audio header is missing or bad
        "bad_audio",  # audio that does not decode
        "unknown_tenant",  # the tenant owns no API key
        "stream_limit",  # an audio stream beyond a memory bound (count, seconds, length)
        "sink_refused",  # a store refused the record's content (its reason in the free text)
        "other",
    }
)


def code_of(code: str | None) -> str:
    """``code`` if it is one of :data:`CODES`, else ``"other"``."""
    return code if code in CODES else "other"
