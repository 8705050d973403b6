"""The one Kafka consumer of a kafka_ws process, on a thread of its own, handing batches to the event loop.

Every process must see every message of the topics it serves, so each process joins a consumer group of its own
(``kafka-ws.<host>.<pid>.<random>``, never committed): with N processes every message is read N times, once by each,
and each sends it to its own connections. The group subscribes to ``^(<tenant>|...)\\..*``, every topic of every
tenant (tenants followed through :class:`ondas.tenancy.TenancyTracker`; new topics of a tenant are found within
``topic.metadata.refresh.interval.ms``). A new group reads from the earliest offset (the embedded broker's latest
offset is not reliable), so messages stamped before the consumer started are skipped: a connection gets what is
published while it is open, never a replay.

Blocking calls (poll, subscribe, close) run on the consumer thread only; batches reach the loop through
``loop.call_soon_threadsafe``."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaError, TopicPartition

from ondas.kafka import consumer_config

log = logging.getLogger("kafka_ws.consumers")

Batch = list[tuple[str, bytes]]


def tenants_pattern(tenants: Iterable[str]) -> str | None:
    """The subscription of ``tenants``: every topic ``<tenant>.<anything>`` (None for no tenant)."""
    names = sorted(tenants)
    if not names:
        return None
    return "^(" + "|".join(re.escape(t) for t in names) + r")\..*"


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
        group_prefix: str = "kafka-ws",
    ) -> None:
        self.group_id = f"{group_prefix}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._bootstrap = bootstrap
        self._loop = loop
        self._deliver = deliver
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()
        self._wanted: str | None = None
        self._changed = False
        self._stop = threading.Event()
        self._assigned = threading.Event()
        self._started_ms = int(time.time() * 1000)
        self._thread: threading.Thread | None = None
        self.failed = False

    @property
    def ready(self) -> bool:
        """Running, and (when it follows a tenant) assigned its partitions."""
        with self._lock:
            wanted = self._wanted
        return not self.failed and self._thread is not None and (wanted is None or self._assigned.is_set())

    def set_tenants(self, tenants: Iterable[str]) -> None:
        """Follow these tenants' topics from now on (thread-safe; applied by the consumer thread)."""
        pattern = tenants_pattern(tenants)
        with self._lock:
            if pattern != self._wanted:
                self._wanted = pattern
                self._changed = True
        log.info("following tenants' topics", extra={"pattern": pattern})

    def start(self) -> None:
        self._started_ms = int(time.time() * 1000)
        self._thread = threading.Thread(target=self._run, name="kafka-ws-fanout", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._consume()
        except Exception:
            self.failed = True
            log.exception("the fan-out consumer stopped")

    def _consume(self) -> None:
        consumer = Consumer(
            consumer_config(
                self._bootstrap,
                self.group_id,
                # Each process has a group of its own that is never committed: nothing to keep once it is gone.
                **{"enable.auto.offset.store": False},
            )
        )
        subscribed: str | None = None

        def on_assign(_c: Consumer, partitions: list[TopicPartition]) -> None:
            self._assigned.set()
            log.info("partitions assigned", extra={"partitions": len(partitions)})

        try:
            while not self._stop.is_set():
                with self._lock:
                    changed, wanted = self._changed, self._wanted
                    self._changed = False
                if changed:
                    if wanted is None:
                        consumer.unsubscribe()
                    else:
                        self._assigned.clear()
                        consumer.subscribe([wanted], on_assign=on_assign)
                    subscribed = wanted
                if subscribed is None:
                    self._stop.wait(self._poll_seconds)
                    continue
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
                if batch and not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(self._deliver, batch)
        finally:
            consumer.close()
