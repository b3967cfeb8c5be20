"""The consume→sink→commit loop every wavegraph processor runs.

One iteration: ``getmany`` a batch → decode each partition's records in one call (invalid ones become
dead letters) → every sink ``write``\\ s and ``flush``\\ es the valid events → dead letters are
acknowledged by the broker → ``commit({tp: last_offset + 1})``. Auto-commit is off, so a committed
offset never runs ahead of what the sinks made durable; a crash replays at most what was processed
since the last commit the broker confirmed (at-least-once; sinks are idempotent).

Backpressure: a sink raising :class:`SinkBackpressureError` makes the loop pause its partitions, seek
back to the batch's first offsets, wait ``retry_after`` (or until stopped) and resume.

Commits run in the background: when a batch is flushed, its positions are committed unless a commit
is still in flight, in which case the next batch's commit (or the next empty fetch's, or the one on the
way out or on revocation) covers them. At most one commit is in flight, it never covers anything not
yet flushed, and the loop never waits for the broker's answer, so commits cost no time per batch
however slow the group coordinator answers.

Sinks whose work spans batches (a transcription window over many records) implement
:class:`~wavegraph.streams.sink.CommitGate`: each commit is lowered to ``committable(tp, offset)``, the
first record such a sink still holds. The position after the last processed record of each partition
is remembered, so a later flush that releases held records commits them without new records. When a
fetch comes back empty and a gate's ``next_deadline()`` has passed, the loop runs a flush cycle with an
empty batch (an idle window to close).

Rebalance: the batch in flight holds a lock; ``on_partitions_revoked`` waits for it and for the commit
in flight (up to the commit deadline), so a revoked partition's work is flushed and committed first. If
the batch outlives the deadline, the revoked partitions are forgotten at once anyway (gated sinks drop
their state, even mid-flush, so the old owner publishes nothing the new owner will also produce), and
when the batch ends its positions and dead letters for those partitions are discarded: the new owner
replays them from the last commit.

Dead letters carry the original value, key and headers, the free-text reason and a reason code from a
fixed set (:mod:`~wavegraph.streams.reasons`, the metric label). A dead letter the broker does not
acknowledge is retried with exponential backoff (``runtime.dlq_retry_backoff_s`` doubling up to
``runtime.dlq_retry_max_s``) until it is, or until ``stop``: the batch is not committed before its dead
letters are durable. One too large for the topic is cut to fit and marked ``wg.dlq.truncated``. A record
already dead-lettered by this process (a batch redelivered after backpressure, or after a failed commit)
is not sent again.

A sink that is a :class:`~wavegraph.streams.sink.TransactionalCommit` (the transcription sink in
exactly-once mode) takes the commits over: each one becomes a Kafka transaction that publishes the
sink's stored events together with the offsets, and a commit is also due while the sink still owes
events (after a restart, for what a killed worker stored but never published).

A sink that is :class:`~wavegraph.streams.sink.AssignmentAware` (the graph job) loads the state of its
new partitions inside the rebalance, before they are fetched.

A :class:`~wavegraph.errors.SinkFatalError` (wrong credentials, read-only database) is not retried: it
stops the processor with its one sentence.

Per record the loop makes one decoder call per partition of a batch (a :class:`BatchDecoder` decodes
them together), one :class:`~wavegraph.streams.sink.Item` and no await; metrics are counted per batch.
While it runs, the garbage collector's youngest generation has room for a whole batch
(:mod:`~wavegraph.streams.gc_headroom`).

Shutdown: set the ``stop`` event; the loop finishes its batch, then every client is closed in
reverse order by one ``AsyncExitStack``. The commit in flight is awaited on every way out (a stop, an
exception, a cancellation), so no background task is left behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import Generic, Protocol, TypeVar, runtime_checkable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord

from wavegraph import metrics
from wavegraph.clients import make_consumer, make_producer
from wavegraph.errors import InvalidEvent, SinkBackpressureError, SinkFatalError
from wavegraph.events import DLQ_HEADER_PREFIX, dlq_headers
from wavegraph.settings import Settings
from wavegraph.streams.gc_headroom import gc_headroom
from wavegraph.streams.reasons import code_of
from wavegraph.streams.sink import AssignmentAware, CommitGate, Item, Rejection, Sink, TransactionalCommit

log = logging.getLogger(__name__)
T = TypeVar("T")

Decoder = Callable[[ConsumerRecord[bytes, bytes]], T]
Decoded = tuple[list[T], dict[int, InvalidEvent]]  # the valid events in order; refusals by record index


@runtime_checkable
class BatchDecoder(Protocol[T]):
    """A decoder that can also decode many records at once (one call per partition of a batch).

    ``decode_batch(records)`` returns the events of the valid records, in order, and the
    :class:`InvalidEvent` of every other record by its index in ``records``: the same verdicts as
    calling the decoder on each record.
    """

    def __call__(self, record: ConsumerRecord[bytes, bytes]) -> T: ...

    def decode_batch(
        self, records: Sequence[ConsumerRecord[bytes, bytes]]
    ) -> tuple[list[T], dict[int, InvalidEvent]]: ...


Dead = tuple[ConsumerRecord[bytes, bytes], str, str]  # record, reason, code

_DLQ_OVERHEAD = 4096  # bytes kept free for the record batch framing beside value, key and headers


def default_group_id(settings: Settings, name: str) -> str:
    """The consumer group of processor ``name``: ``<runtime.group_prefix>.<name>``."""
    return f"{settings.runtime.group_prefix}.{name}"


class _Stopped(Exception):
    """The stop event was set while dead letters still waited for the broker: leave uncommitted."""


class _RevokeListener(ConsumerRebalanceListener):
    def __init__(self, processor: StreamProcessor[object]) -> None:
        self._processor = processor

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # The batch in flight commits before it releases the lock; waiting for it is the flush.
        lock = self._processor._batch_lock
        try:
            await asyncio.wait_for(lock.acquire(), self._processor.settings.runtime.commit_deadline_s)
        except TimeoutError:
            log.warning(
                "revocation of %s: batch still in flight after the commit deadline; its work on them "
                "is dropped (the new owner replays it)",
                revoked,
            )
            self._processor.revoke_in_flight(revoked)
            return
        try:
            await asyncio.wait_for(
                self._processor.wait_commit(), self._processor.settings.runtime.commit_deadline_s
            )
        except TimeoutError:
            log.warning("revocation of %s: the last commit did not finish within the deadline", revoked)
        finally:
            self._processor.forget(revoked)
            lock.release()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))
        aware = [s for s in self._processor.sinks if isinstance(s, AssignmentAware)]
        if aware:
            async with self._processor._batch_lock:  # never beside a flush (a timer's, during the rebalance)
                for sink in aware:
                    await sink.assigned(assigned)


class StreamProcessor(Generic[T]):
    """Consume ``topics`` as consumer group ``group_id``, decode, write to ``sinks``, commit.

    ``decode`` turns a record into an event or raises :class:`InvalidEvent` (→ dead letter); a
    :class:`BatchDecoder` is called once per partition of each batch instead.
    """

    def __init__(
        self,
        settings: Settings,
        name: str,
        topics: Sequence[str],
        decode: Decoder[T],
        sinks: Sequence[Sink[T]],
        *,
        group_id: str | None = None,
        max_batch: int | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.topics = list(topics)
        self.decode = decode
        self._decode_batch = decode.decode_batch if isinstance(decode, BatchDecoder) else self._decode_each
        self.sinks = list(sinks)
        self.group_id = group_id or default_group_id(settings, name)
        self.max_batch = max_batch or settings.runtime.max_batch
        self._batch_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self.committed: dict[TopicPartition, int] = {}
        self.stats = {"consumed": 0, "sunk": 0, "dead_letters": 0, "pauses": 0, "commits": 0}
        self.started = asyncio.Event()
        self._commit_task: asyncio.Task[None] | None = None
        self._uncommitted_since: float | None = None  # start of the oldest flushed, uncommitted batch
        self._positions: dict[TopicPartition, int] = {}
        self._gates = [s for s in self.sinks if isinstance(s, CommitGate)]
        txn = [s for s in self.sinks if isinstance(s, TransactionalCommit) and s.transactional]
        if len(txn) > 1:
            raise ValueError(f"{name}: at most one sink may commit the offsets in its transactions")
        self._txn: TransactionalCommit | None = txn[0] if txn else None
        self._revoked_in_flight: set[TopicPartition] = set()
        self._dead_lettered: dict[TopicPartition, set[int]] = {}

    def _make_consumer(self) -> AIOKafkaConsumer:
        instance = self.settings.runtime.instance  # tells the members of a group apart (describe_groups)
        return make_consumer(
            self.settings.kafka,
            group_id=self.group_id,
            client_id=f"wavegraph-{self.name}" + ("" if instance is None else f"-{instance}"),
            max_poll_records=self.max_batch,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then finish the batch in flight and close every client."""
        async with AsyncExitStack() as stack:
            producer = make_producer(
                self.settings.kafka,
                client_id=f"wavegraph-{self.name}-dlq",
                request_timeout_ms=int(self.settings.runtime.dlq_send_timeout_s * 1000),
            )
            await producer.start()
            stack.push_async_callback(producer.stop)
            consumer = self._make_consumer()
            consumer.subscribe(self.topics, listener=_RevokeListener(self))  # type: ignore[arg-type]
            await consumer.start()
            stack.push_async_callback(consumer.stop)
            self._consumer = consumer
            stack.push_async_callback(self._settle_commit)  # runs before the clients close
            stack.enter_context(gc_headroom(self.max_batch))
            self.started.set()
            timeout_ms = self.settings.runtime.fetch_timeout_ms
            while not stop.is_set():
                try:
                    batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=self.max_batch)
                except KafkaError as exc:
                    log.warning("%s: fetch failed, retrying: %s", self.name, exc)
                    await asyncio.sleep(0.5)
                    continue
                if not batches and not self._timer_due():
                    self._start_commit(consumer)  # an idle stream commits what is left
                    continue
                try:
                    async with self._batch_lock:
                        retry_after = await self._process(consumer, producer, batches, stop)
                except _Stopped:
                    break
                if retry_after is not None:
                    await self._wait_backpressure(consumer, batches, retry_after, stop)
                # Sinks that never suspend and a fetcher with records buffered would otherwise keep the
                # loop from the commit, the heartbeat and the next fetch: one yield per batch.
                await asyncio.sleep(0)
            await self.wait_commit()
            self._consumer = None

    async def _settle_commit(self) -> None:
        """On any way out: await the commit in flight, then commit what it did not cover (bounded by
        the commit deadline)."""
        try:
            await asyncio.wait_for(self.wait_commit(), self.settings.runtime.commit_deadline_s)
        except TimeoutError:
            log.warning("%s: the last commit did not finish within the deadline", self.name)
        finally:
            self._commit_task = None

    async def _process(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        stop: asyncio.Event,
    ) -> float | None:
        started = time.perf_counter()
        self._revoked_in_flight = set()
        items: list[Item[T]] = []
        dead: list[Dead] = []
        consumed = 0
        for tp, records in batches.items():
            consumed += len(records)
            metrics.EVENTS_CONSUMED.labels(self.name, tp.topic).inc(len(records))
            events, refused = self._decode_batch(records)
            if refused:
                dead.extend((records[i], exc.reason, exc.code) for i, exc in refused.items())
                records = [rec for i, rec in enumerate(records) if i not in refused]
            topic, partition = tp.topic, tp.partition
            items += [
                Item(value, topic, partition, rec.offset, rec.value, tuple(rec.headers), rec.key)
                for value, rec in zip(events, records, strict=True)
            ]
        self.stats["consumed"] += consumed
        try:
            for sink in self.sinks:
                await sink.write(items)
                rejected: list[Rejection[T]] = await sink.flush()
                dead.extend((_as_record(rej.item), rej.reason, rej.code) for rej in rejected)
        except SinkBackpressureError as exc:
            log.info("%s: backpressure (%s); pausing for %.2fs", self.name, exc.reason, exc.retry_after)
            return exc.retry_after
        gone = self._revoked_in_flight  # revoked while this batch ran: the new owner replays them
        if gone:
            dead = [d for d in dead if TopicPartition(d[0].topic, d[0].partition) not in gone]
        await self._send_dead_letters(producer, dead, stop)
        self.stats["sunk"] += len(items)
        metrics.EVENTS_SUNK.labels(self.name).inc(len(items))
        self._positions.update(
            {tp: records[-1].offset + 1 for tp, records in batches.items() if tp not in gone}
        )
        if self._uncommitted_since is None:
            self._uncommitted_since = started
        self._publish_lag(consumer)
        self._start_commit(consumer)
        return None

    def _publish_lag(self, consumer: AIOKafkaConsumer) -> None:
        """``wavegraph_consumer_lag{topic}``: the high watermarks of the last fetch minus the flushed
        positions, summed over this worker's partitions (what a restart would still have to read)."""
        lag: dict[str, int] = {}
        for tp, position in self._positions.items():
            high = consumer.highwater(tp)
            if high is not None:
                lag[tp.topic] = lag.get(tp.topic, 0) + max(0, high - position)
        for topic, value in lag.items():
            metrics.CONSUMER_LAG.labels(self.name, topic).set(value)

    def _start_commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit the flushed positions in the background, unless a commit is still in flight."""
        task = self._commit_task
        if task is not None:
            if not task.done():
                return  # its successor covers this batch too
            self._commit_task = None
            task.result()  # _commit handles the broker's refusals; anything else is a bug: raise it
        offsets = self._gated_offsets(consumer)
        if offsets or self._owes():
            self._commit_task = asyncio.create_task(
                self._commit(consumer, offsets, self._take_uncommitted_since())
            )

    def _owes(self, tp: TopicPartition | None = None) -> bool:
        """Whether the transactional sink still owes events (of ``tp``; of any partition: None): a
        commit is then due even if no offset moved."""
        return self._txn is not None and self._txn.owes(tp)

    def _take_uncommitted_since(self) -> float | None:
        started, self._uncommitted_since = self._uncommitted_since, None
        return started

    def _decode_each(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> Decoded[T]:
        events: list[T] = []
        refused: dict[int, InvalidEvent] = {}
        for i, rec in enumerate(records):
            try:
                events.append(self.decode(rec))
            except InvalidEvent as exc:
                refused[i] = exc
        return events, refused

    def _gated_offsets(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """Each assigned partition's position, lowered by the gates, where it is past the last commit."""
        assigned = consumer.assignment()
        offsets: dict[TopicPartition, int] = {}
        for tp, offset in self._positions.items():
            for gate in self._gates:
                offset = min(offset, gate.committable(tp, offset))
            if tp in assigned and (offset > self.committed.get(tp, -1) or self._owes(tp)):
                offsets[tp] = offset
        return offsets

    def _timer_due(self) -> bool:
        deadlines = [d for gate in self._gates if (d := gate.next_deadline()) is not None]
        now = time.monotonic()  # read after the gates: "due now" (their own monotonic()) fires
        return any(d <= now for d in deadlines)

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Drop the positions, commits and gated sink state of revoked ``partitions``."""
        for tp in partitions:
            self._positions.pop(tp, None)
            self.committed.pop(tp, None)
            self._dead_lettered.pop(tp, None)
        for gate in self._gates:
            gate.revoked(partitions)

    def revoke_in_flight(self, partitions: list[TopicPartition]) -> None:
        """``partitions`` were revoked while a batch is still running: forget them now (gated sinks
        drop their state, even mid-flush) and have the batch discard its work on them when it ends."""
        self._revoked_in_flight.update(partitions)
        self.forget(partitions)

    async def _commit(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int], started: float | None
    ) -> None:
        try:
            if self._txn is not None:  # offsets and the sink's events in one Kafka transaction
                offsets = await self._txn.commit_offsets(offsets)
            else:
                await consumer.commit(offsets)
        except SinkFatalError:
            raise
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # The group rebalanced under us: the new owner replays from the last commit (at-least-once).
            log.warning("%s: commit failed: %s", self.name, exc)
            return
        self.committed.update(offsets)
        for tp, offset in offsets.items():
            sent = self._dead_lettered.get(tp)
            if sent:
                sent.difference_update([o for o in sent if o < offset])
        self.stats["commits"] += 1
        metrics.COMMITS.labels(self.name).inc()
        if started is not None:
            metrics.BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)

    async def wait_commit(self) -> None:
        """Wait for the commit in flight, if any, then commit (and wait for) what it did not cover."""
        task, self._commit_task = self._commit_task, None
        if task is not None:
            await task
        consumer = self._consumer
        offsets = self._gated_offsets(consumer) if consumer is not None else {}
        if consumer is not None and (offsets or self._owes()):
            await self._commit(consumer, offsets, self._take_uncommitted_since())

    async def _send_dead_letters(
        self, producer: AIOKafkaProducer, dead: list[Dead], stop: asyncio.Event
    ) -> None:
        """Send ``dead`` to the DLQ and wait until the broker acknowledged every one (retrying with
        backoff); raise :class:`_Stopped` if ``stop`` is set while some are still unacknowledged."""
        pending = [d for d in dead if d[0].offset not in self._sent_set(d[0])]
        runtime = self.settings.runtime
        delay = runtime.dlq_retry_backoff_s
        while pending:
            failed: list[Dead] = []
            sent: list[tuple[Dead, asyncio.Future[object]]] = []
            for entry in pending:
                try:
                    sent.append((entry, await self._send_one(producer, entry)))
                except KafkaError as exc:
                    log.warning("%s: dead letter not sent (%r); will retry", self.name, exc)
                    failed.append(entry)
            for entry, fut in sent:
                try:
                    try:
                        await fut
                    except MessageSizeTooLargeError:  # the DLQ topic takes less than ours: coordinates only
                        await (await self._send_one(producer, entry, slim=True))
                except KafkaError as exc:
                    log.warning("%s: dead letter not acknowledged (%r); will retry", self.name, exc)
                    failed.append(entry)
                    continue
                rec, _, code = entry
                self._sent_set(rec).add(rec.offset)
                metrics.DLQ_EVENTS.labels(self.name, code_of(code)).inc()
                self.stats["dead_letters"] += 1
            if not failed:
                return
            metrics.DLQ_SEND_RETRIES.labels(self.name).inc(len(failed))
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
            if stop.is_set():
                raise _Stopped
            delay = min(delay * 2, runtime.dlq_retry_max_s)
            pending = failed

    def _sent_set(self, rec: ConsumerRecord[bytes, bytes]) -> set[int]:
        return self._dead_lettered.setdefault(TopicPartition(rec.topic, rec.partition), set())

    async def _send_one(
        self, producer: AIOKafkaProducer, entry: Dead, slim: bool = False
    ) -> asyncio.Future[object]:
        """Hand one dead letter to the producer. Its value is cut to what fits beside the headers under
        ``kafka.max_message_bytes``; ``slim`` (or headers too large on their own) sends the ``wg.dlq.*``
        headers with an empty value. A cut is marked ``wg.dlq.truncated`` = the original size."""
        rec, reason, code = entry
        headers = dlq_headers(rec.topic, rec.partition, rec.offset, reason, self.name, rec.headers)
        headers.insert(4, (f"{DLQ_HEADER_PREFIX}code", code_of(code).encode()))
        topic = self.settings.kafka.topics.dlq
        value = rec.value
        size = len(value or b"")
        room = self.settings.kafka.max_message_bytes - _DLQ_OVERHEAD - len(rec.key or b"")
        room -= sum(len(k) + len(v) for k, v in headers)
        if not slim and value is not None and size > room:
            headers.append((f"{DLQ_HEADER_PREFIX}truncated", str(size).encode()))
            value = value[: max(0, room - 64)]
        if not slim:
            try:
                return await producer.send(topic, value=value, key=rec.key, headers=headers)
            except MessageSizeTooLargeError:
                pass
        meta = [
            h
            for h in headers
            if h[0].startswith(DLQ_HEADER_PREFIX) and h[0] != f"{DLQ_HEADER_PREFIX}truncated"
        ]
        meta.append((f"{DLQ_HEADER_PREFIX}truncated", str(size).encode()))
        return await producer.send(topic, value=b"", key=rec.key, headers=meta)

    async def _wait_backpressure(
        self,
        consumer: AIOKafkaConsumer,
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]],
        retry_after: float,
        stop: asyncio.Event,
    ) -> None:
        assigned = consumer.assignment()
        consumer.pause(*assigned)
        self.stats["pauses"] += 1
        metrics.BACKPRESSURE_PAUSES.labels(self.name).inc()
        for tp, records in batches.items():
            if tp in assigned:
                consumer.seek(tp, records[0].offset)
        try:
            await asyncio.wait_for(stop.wait(), timeout=retry_after)
        except TimeoutError:
            pass
        still = consumer.assignment()
        consumer.resume(*[tp for tp in assigned if tp in still])


def _as_record(item: Item[object]) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=item.topic,
        partition=item.partition,
        offset=item.offset,
        timestamp=0,
        timestamp_type=0,
        key=item.key,
        value=item.raw,
        checksum=None,
        serialized_key_size=-1,
        serialized_value_size=len(item.raw or b""),
        headers=list(item.headers),
    )
