"""The one Kafka consumer of a kafka_ws process, on a thread of its own, handing batches to the event loop.

Every process must see every message of the topics it serves, so no consumer group shares the work: the consumer
assigns itself every partition of every topic of the followed tenants (``assign``, no group membership, nothing
committed). With N processes every message is read N times, once by each, and each sends it to its own
connections. Direct assignment, not a group subscription, because a subscription change (a tenant created at run
time, a new topic) makes a group rejoin, which stops delivery for seconds and may re-read from the start.

The consumer thread scans the cluster's metadata every ``scan_seconds`` (and at once when the tenants change):
partitions of a followed tenant that are new to it are added with ``incremental_assign``, partitions of a tenant no
longer followed (or of a deleted topic) are removed. Where reading starts:

- partitions that exist at the first scan: at their end (the high watermark, read at assignment);
- partitions found later (a topic created since, a new tenant): at their beginning, since all they hold is new.

Either way a message stamped before this process started is skipped (the embedded broker's watermark may lag the
last batch): a connection gets what is published while it is open, never a replay.

Blocking calls (consume, metadata, assign, close) run on the consumer thread only; batches reach the loop through
``loop.call_soon_threadsafe``, one at a time (the next is read once the loop has dispatched the last)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from ondas.kafka import consumer_config
from ondas.topics import parse as parse_topic

log = logging.getLogger("kafka_ws.consumers")

Batch = list[tuple[str, bytes]]
Partition = tuple[str, int]


def followed_topics(topics: Iterable[str], tenants: Iterable[str]) -> list[str]:
    """The topics ``<tenant>.<subject>`` of ``tenants`` among ``topics`` (sorted)."""
    wanted = set(tenants)
    found = []
    for name in topics:
        try:
            parsed = parse_topic(name)
        except ValueError:
            continue
        if parsed.tenant in wanted:
            found.append(name)
    return sorted(found)


class Fanout:
    """Reads every topic of the followed tenants and calls ``deliver(batch)`` on ``loop`` for each batch."""

    def __init__(
        self,
        bootstrap: str,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Batch], None],
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.05,
        scan_seconds: float = 1.0,
        group_prefix: str = "kafka-ws",
    ) -> None:
        # Never joined nor committed (assign only); librdkafka wants one all the same.
        self.group_id = f"{group_prefix}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._bootstrap = bootstrap
        self._loop = loop
        self._deliver = deliver
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._scan_seconds = scan_seconds
        self._lock = threading.Lock()
        self._tenants: frozenset[str] | None = None
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._scanned = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._started_ms = int(time.time() * 1000)
        self._thread: threading.Thread | None = None
        self._assigned: set[Partition] = set()
        self.failed = False

    @property
    def ready(self) -> bool:
        """Running, and its partitions assigned since the tenants were first known."""
        return not self.failed and self._thread is not None and self._scanned.is_set()

    @property
    def partitions(self) -> int:
        """How many partitions it reads."""
        return len(self._assigned)

    def set_tenants(self, tenants: Iterable[str]) -> None:
        """Follow these tenants' topics from now on (thread-safe; applied by the consumer thread at once)."""
        wanted = frozenset(tenants)
        with self._lock:
            if wanted == self._tenants:
                return
            self._tenants = wanted
        self._changed.set()
        log.info("following tenants' topics", extra={"tenants": len(wanted)})

    def start(self) -> None:
        self._started_ms = int(time.time() * 1000)
        self._thread = threading.Thread(target=self._run, name="kafka-ws-fanout", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._consume()
        except Exception:
            self.failed = True
            log.exception("the fan-out consumer stopped")

    def _consume(self) -> None:
        consumer = Consumer(consumer_config(self._bootstrap, self.group_id, **{"enable.auto.offset.store": False}))
        next_scan = 0.0
        try:
            while not self._stop.is_set():
                if self._changed.is_set() or time.monotonic() >= next_scan:
                    self._changed.clear()
                    with self._lock:
                        tenants = self._tenants
                    if tenants is not None:
                        try:
                            self._scan(consumer, tenants)
                        except KafkaException as exc:
                            log.warning("cannot read the topics' metadata yet", extra={"error": str(exc)})
                    next_scan = time.monotonic() + self._scan_seconds
                if not self._assigned:
                    self._changed.wait(min(self._poll_seconds * 4, max(0.0, next_scan - time.monotonic())))
                    continue
                self._read(consumer)
        finally:
            consumer.close()

    def _scan(self, consumer: Consumer, tenants: frozenset[str]) -> None:
        """Assign the followed tenants' partitions that are new, unassign those no longer followed."""
        metadata = consumer.list_topics(timeout=5)
        present: set[Partition] = set()
        for name in followed_topics(metadata.topics, tenants):
            topic = metadata.topics[name]
            if topic.error is not None:
                continue
            present.update((name, p) for p in topic.partitions)
        first = not self._scanned.is_set()
        added = sorted(present - self._assigned)
        gone = sorted(self._assigned - present)
        if gone:
            consumer.incremental_unassign([TopicPartition(t, p) for t, p in gone])
            self._assigned.difference_update(gone)
        if added:
            starts = []
            for t, p in added:
                offset = OFFSET_BEGINNING
                if first:
                    _low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=5, cached=False)
                    offset = max(high, 0)
                starts.append(TopicPartition(t, p, offset))
            consumer.incremental_assign(starts)
            self._assigned.update(added)
        if added or gone:
            log.info(
                "partitions assigned",
                extra={"added": len(added), "removed": len(gone), "partitions": len(self._assigned)},
            )
        self._scanned.set()

    def _read(self, consumer: Consumer) -> None:
        messages = consumer.consume(self._batch_size, timeout=self._poll_seconds)
        batch: Batch = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    log.warning("consumer error", extra={"error": str(err)})
                continue
            kind, stamp = msg.timestamp()
            if kind and 0 < stamp < self._started_ms:
                continue  # published before this process listened: not real time for anyone here
            topic, value = msg.topic(), msg.value()
            if topic is None or value is None:
                continue
            batch.append((topic, value))
        if batch:
            self._hand_over(batch)

    def _hand_over(self, batch: Batch) -> None:
        """Give ``batch`` to the loop once the previous one was dispatched: at most one batch waits there, so a
        busy loop slows the reading down instead of piling batches up faster than the connections' writers run."""
        while not self._idle.wait(0.1):
            if self._stop.is_set():
                return
        self._idle.clear()

        def dispatch() -> None:
            try:
                self._deliver(batch)
            finally:
                self._idle.set()

        try:
            self._loop.call_soon_threadsafe(dispatch)
        except RuntimeError:  # the loop is closed: the process is stopping
            self._idle.set()
