"""The one Kafka consumer of a kafka_ws process, on a thread of its own, handing batches to the event loop.

It reads only the topics someone listens to here: the topics of the open websockets and, for socket.io rooms, the
tenant's ``device-data`` and ``dojot.notifications``. Nobody connected, nothing is fetched: a broker serving
thousands of tenants pays for the topics that have listeners, not for all of them (measured on the embedded
broker: a consumer of 500 idle partitions costs it about 0.9 CPU; ``bench.kafka_idle``).

Every process must see every message of the topics its clients listen to, so no consumer group shares the work:
the consumer assigns itself the partitions (``incremental_assign``, no group membership, nothing committed).
With N processes a message is read once by each process that has a listener for it. Direct assignment, not a
group subscription, because a subscription change makes a group rejoin, which stops delivery for seconds.

When a topic gets its first listener (:meth:`Fanout.set_topics`, called by the loop whenever the listened set
changes) the consumer thread assigns its partitions at once:

- a topic that exists: from ``backtrack`` messages before its end (the embedded broker's end offset may lag the
  last batch, and a message may land between the listener's arrival and the assignment);
- a topic that does not exist yet (a tenant's first notification): found by the metadata scan every
  ``scan_seconds`` and read from its beginning, since all it holds is new.

Either way a message stamped before the topic got its listener is skipped: a connection gets what is published
while it is open, never a replay. A topic whose last listener left stays assigned ``linger_seconds`` (a client
that reconnects finds it still read), then it is unassigned.

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
from prometheus_client import Gauge

from ondas.kafka import consumer_config

log = logging.getLogger("kafka_ws.consumers")

Batch = list[tuple[str, bytes]]
Partition = tuple[str, int]

ASSIGNED = Gauge("kafka_ws_partitions_assigned", "Kafka partitions the fan-out reads (topics with listeners)")


def start_offset(low: int, high: int, backtrack: int) -> int:
    """Where a newly listened partition is read from: ``backtrack`` before its end, never before its start."""
    return max(low, high - backtrack, 0)


class Fanout:
    """Reads the listened topics and calls ``deliver(batch)`` on ``loop`` for each batch."""

    def __init__(
        self,
        bootstrap: str,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Batch], None],
        *,
        batch_size: int = 500,
        poll_seconds: float = 0.05,
        scan_seconds: float = 1.0,
        linger_seconds: float = 30.0,
        backtrack: int = 1000,
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
        self._linger_seconds = linger_seconds
        self._backtrack = backtrack
        self._lock = threading.Lock()
        # topic -> when it got its first listener (ms since the epoch); written by set_topics under the lock
        self._wanted: dict[str, int] = {}
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._scanned = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        # consumer thread only:
        self._assigned: set[Partition] = set()
        self._since: dict[str, int] = {}  # topic -> messages stamped earlier are skipped
        self._missing: set[str] = set()  # listened topics not in the cluster at the last scan
        self._left_at: dict[str, float] = {}  # assigned topics without listeners -> since when (monotonic)
        self.failed = False

    @property
    def ready(self) -> bool:
        """Running, and the cluster's metadata read once."""
        return not self.failed and self._thread is not None and self._scanned.is_set()

    @property
    def partitions(self) -> int:
        """How many partitions it reads."""
        return len(self._assigned)

    def set_topics(self, topics: Iterable[str]) -> None:
        """Read these topics from now on (thread-safe; applied by the consumer thread at once)."""
        now_ms = int(time.time() * 1000)
        wanted = set(topics)
        with self._lock:
            if wanted == set(self._wanted):
                return
            self._wanted = {t: self._wanted.get(t, now_ms) for t in wanted}
        self._changed.set()

    def start(self) -> None:
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
                now = time.monotonic()
                if self._changed.is_set() or now >= next_scan:
                    self._changed.clear()
                    with self._lock:
                        wanted = dict(self._wanted)
                    try:
                        self._scan(consumer, wanted)
                    except KafkaException as exc:
                        log.warning("cannot read the topics' metadata yet", extra={"error": str(exc)})
                    next_scan = time.monotonic() + self._scan_seconds
                if not self._assigned:
                    self._changed.wait(max(0.0, next_scan - time.monotonic()))
                    continue
                self._read(consumer)
        finally:
            consumer.close()

    def _scan(self, consumer: Consumer, wanted: dict[str, int]) -> None:
        """Assign the listened topics' partitions not read yet; unassign those of topics gone or left long ago."""
        now = time.monotonic()
        for name in set(self._left_at) & set(wanted):
            del self._left_at[name]
        for name in {t for t, _ in self._assigned} - set(wanted):
            self._left_at.setdefault(name, now)
        expired = {t for t, left in self._left_at.items() if now - left >= self._linger_seconds}
        if not wanted and not expired and self._scanned.is_set():
            return  # nobody listens: no metadata to read
        metadata = consumer.list_topics(timeout=5)
        present: dict[str, list[int]] = {}
        for name in wanted:
            topic = metadata.topics.get(name)
            if topic is not None and topic.error is None:
                present[name] = sorted(topic.partitions)
        gone = sorted(
            (t, p) for t, p in self._assigned if t in expired or (t in wanted and p not in present.get(t, ()))
        )
        if gone:
            consumer.incremental_unassign([TopicPartition(t, p) for t, p in gone])
            self._assigned.difference_update(gone)
            for name in {t for t, _ in gone} - {t for t, _ in self._assigned}:
                self._left_at.pop(name, None)
                self._since.pop(name, None)
        starts = []
        for name, parts in present.items():
            for p in parts:
                if (name, p) in self._assigned:
                    continue
                if name in self._missing:
                    offset = OFFSET_BEGINNING  # created since it was first listened to: all it holds is new
                else:
                    low, high = consumer.get_watermark_offsets(TopicPartition(name, p), timeout=5, cached=False)
                    offset = start_offset(low, high, self._backtrack)
                starts.append(TopicPartition(name, p, offset))
                self._since[name] = wanted[name]
        if starts:
            consumer.incremental_assign(starts)
            self._assigned.update((tp.topic, tp.partition) for tp in starts)
        self._missing = set(wanted) - set(present)
        if starts or gone:
            ASSIGNED.set(len(self._assigned))
            log.info(
                "partitions assigned",
                extra={"added": len(starts), "removed": len(gone), "partitions": len(self._assigned)},
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
            topic, value = msg.topic(), msg.value()
            if topic is None or value is None:
                continue
            kind, stamp = msg.timestamp()
            if kind and 0 < stamp < self._since.get(topic, 0):
                continue  # published before anyone here listened to it: not real time for anyone
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
