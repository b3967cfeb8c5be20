"""Load and fault scenarios for edge ingestion (``wavegraph loadtest …``, ``wavegraph chaos …``).

Each scenario runs the real pieces (HTTP API, Kafka, the edge processor, Neo4j, Redis), checks the
figures of issue 4 and returns a report in the shared bench format (``bench/results/*.json``):

- :mod:`~wavegraph.loadtest.burst`: measure the sustainable rate, offer a multiple of it over HTTP and
  Kafka; nothing accepted is lost, few 429s, the lag drains.
- :mod:`~wavegraph.loadtest.outage`: stop Neo4j under load; the breaker goes 0 → 1 → 2 → 0, the API
  answers 429 with ``Retry-After`` while it is open, every accepted edge ends up in Neo4j exactly once.
- :mod:`~wavegraph.loadtest.kill`: SIGKILL the worker during a batch write; nothing lost or doubled.
- :mod:`~wavegraph.loadtest.broker`: restart the Kafka broker under load; nothing lost or doubled.
- :mod:`~wavegraph.loadtest.broker_kill`: SIGKILL a partition leader of a 3-broker cluster under acks=all
  load; every acknowledged event is in the topic and in Neo4j, the leader moves, the lag drains
  (helpers: :mod:`~wavegraph.loadtest.leaders`, :mod:`~wavegraph.loadtest.log_check`).
- :mod:`~wavegraph.loadtest.bad_input`: 2 % malformed events go to the DLQ with a reason, the rest to Neo4j.

Runs are isolated by :mod:`~wavegraph.loadtest.scope` (own topics, group, tenant, Redis); the services
a scenario stops are always passed in by the caller.
"""
