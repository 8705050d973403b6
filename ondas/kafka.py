"""Kafka for every service: client settings, the one producer of a process, topic creation and the
consumer loop.

Guarantees (see docs/kafka-contract.md):
- The producer is idempotent with ``acks=all``; :meth:`Producer.send` returns a future that resolves only
  when the broker accepted the message, so callers can acknowledge upstream after that.
- :class:`ConsumerLoop` commits an offset only after its handler returned for that message. Every error has an
  explicit policy: ``RETRY`` (same message again, with back-off), ``DEAD_LETTER`` (copy to ``<topic>.dlq``
  with the reason in headers, then move on) or ``STOP`` (commit what succeeded and stop the loop; the
  supervisor restarts the process and the message is delivered again).

Settings are valid on the embedded broker and on Apache Kafka alike: 6000 ms sessions, a short fetch wait
(the embedded broker does not wake a waiting fetch on new data) and ``earliest`` offset reset (its
``latest`` offset is unreliable).

While a RETRY error is being retried, the loop pauses the partitions of its assignment and keeps polling during
each back-off, so the member keeps its heartbeats and its poll interval however long the outage lasts; it
resumes (and seeks back to the offset after the last message handled) once the handler succeeded. Only one
handler call has to fit in ``max.poll.interval.ms``.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka import Producer as _RdProducer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from prometheus_client import Counter

from ondas.contracts import ContractError
from ondas.errors import Invalid, Unavailable
from ondas.topics import TENANCY_TOPIC, dead_letter

log = logging.getLogger("ondas.kafka")

PRODUCED = Counter("ondas_kafka_produced_messages_total", "Messages the broker accepted", ["topic"])
PRODUCE_ERRORS = Counter("ondas_kafka_produce_errors_total", "Messages the broker did not accept", ["topic"])
CONSUMED = Counter("ondas_kafka_consumed_messages_total", "Messages handled and committed", ["group", "topic"])
OFFSET_GAPS = Counter(
    "ondas_kafka_offset_gaps_total",
    "Fetches that skipped offsets of a partition: re-read from the first missing offset, or accepted as a real gap",
    ["group", "outcome"],
)
HANDLER_ERRORS = Counter(
    "ondas_kafka_handler_errors_total", "Handler failures by the policy applied", ["group", "policy"]
)
REBALANCES = Counter(
    "ondas_kafka_rebalances_total",
    "Partition assignments a consumer loop received, and revocations and losses of them",
    ["group", "event"],
)

Headers = list[tuple[str, str | bytes | None]]


def backoff_delay(attempt: int, backoff: tuple[float, float]) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): doubling from ``backoff[0]``, at most ``backoff[1]``."""
    return min(backoff[1], backoff[0] * 2.0 ** min(attempt, 10))


def common_config(bootstrap: str) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, "socket.keepalive.enable": True}


def consumer_config(bootstrap: str, group_id: str, **extra: Any) -> dict[str, Any]:
    cfg = common_config(bootstrap)
    cfg.update(
        {
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 2000,
            "fetch.wait.max.ms": 20,
            "topic.metadata.refresh.interval.ms": 2000,
            # The longest time between two polls before librdkafka takes this member out of its group. The loop
            # polls during every retry back-off (see ConsumerLoop), so this bounds one handler call only: the
            # longest are a tenant purge (a tenant's rows or database removed) and a batch whose writes wait on
            # timeouts of 30 s (producer, auth); 5 minutes is well above both.
            "max.poll.interval.ms": 300000,
        }
    )
    cfg.update(extra)
    return cfg


def producer_config(bootstrap: str, **extra: Any) -> dict[str, Any]:
    cfg = common_config(bootstrap)
    cfg.update(
        {
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 30000,
        }
    )
    cfg.update(extra)
    return cfg


def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int = 1, timeout: float = 15.0) -> None:
    """Create the topics that do not exist yet. Existing topics are left as they are."""
    wanted = sorted(set(topics))
    if not wanted:
        return
    admin = AdminClient(common_config(bootstrap))
    existing = set(admin.list_topics(timeout=timeout).topics)
    missing = [t for t in wanted if t not in existing]
    if not missing:
        return
    futures = admin.create_topics(
        [NewTopic(t, num_partitions=partitions, replication_factor=-1) for t in missing],
        request_timeout=timeout,
    )
    for name, fut in futures.items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        log.info("topic created", extra={"topic": name})


def delete_tenant_topics(bootstrap: str, tenant: str, timeout: float = 15.0) -> list[str]:
    """Delete every topic of ``tenant`` (``<tenant>.<anything>``, dead-letter topics too) and return their names.
    The tenancy topic is never touched. Deleting a topic also drops the consumer groups' offsets of it, so a
    topic of the same name created later is read from its start."""
    prefix = tenant + "."
    admin = AdminClient(common_config(bootstrap))
    names = sorted(t for t in admin.list_topics(timeout=timeout).topics if t.startswith(prefix) and t != TENANCY_TOPIC)
    if not names:
        return []
    for name, fut in admin.delete_topics(names, request_timeout=timeout).items():
        try:
            fut.result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
        log.info("topic deleted", extra={"topic": name, "tenant": tenant})
    return names


class Producer:
    """The one producer of a process. Thread-safe; delivery reports are served by a background thread."""

    def __init__(self, bootstrap: str, **extra: Any) -> None:
        self._producer = _RdProducer(producer_config(bootstrap, **extra))
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-producer-poll", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.05)

    def send(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        headers: Headers | None = None,
        timestamp_ms: int | None = None,
    ) -> Future[Message]:
        """Queue a message; the future resolves when the broker accepted it (or fails with Unavailable).
        ``timestamp_ms``: the message's timestamp (epoch milliseconds) when it is not the time of sending."""
        fut: Future[Message] = Future()

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            if err is not None:
                PRODUCE_ERRORS.labels(topic).inc()
                fut.set_exception(Unavailable(f"broker did not accept the message: {err.str()}", topic=topic))
            else:
                PRODUCED.labels(topic).inc()
                fut.set_result(msg)

        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=on_delivery,
                    timestamp=timestamp_ms or 0,
                )
                return fut
            except BufferError:
                self._producer.poll(0.05)

    def send_and_wait(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        headers: Headers | None = None,
        timeout: float = 30.0,
    ) -> Message:
        return self.send(topic, value, key, headers).result(timeout)

    def flush(self, timeout: float = 10.0) -> int:
        return int(self._producer.flush(timeout))

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._closed.set()
        self._poller.join(2)


_producers: dict[str, Producer] = {}
_producer_lock = threading.Lock()


def get_producer(bootstrap: str) -> Producer:
    """This process's producer for the cluster at ``bootstrap``, created on first use (never at import time, so
    forks are safe). One per cluster: a process that talks to two clusters gets each its own."""
    with _producer_lock:
        producer = _producers.get(bootstrap)
        if producer is None:
            producer = _producers[bootstrap] = Producer(bootstrap)
        return producer


def close_producer(timeout: float = 5.0) -> None:
    """Flush and close this process's producers (at shutdown); a later :func:`get_producer` makes a new one."""
    with _producer_lock:
        producers = list(_producers.values())
        _producers.clear()
    for producer in producers:
        producer.close(timeout)


class Policy(enum.Enum):
    RETRY = "retry"
    DEAD_LETTER = "dead_letter"
    STOP = "stop"


def default_policy(exc: BaseException) -> Policy:
    """Bad input goes to the dead-letter topic; an unavailable dependency is retried; anything else stops."""
    if isinstance(exc, ContractError | Invalid | ValueError):
        return Policy.DEAD_LETTER
    if isinstance(exc, Unavailable | ConnectionError | TimeoutError | KafkaException):
        return Policy.RETRY
    return Policy.STOP


class StopConsuming(Exception):
    """Raised out of :meth:`ConsumerLoop.run` when a handler error has the STOP policy."""


Partition = tuple[str, int]


class GapGuard:
    """Finds offsets a fetch skipped. Offsets of a partition are consecutive for plain produce; a fetch that
    jumps over some (seen on the embedded broker while several producers write one partition at once, the
    skipped records showing up on a later read) would otherwise be committed past, and those records lost.
    A jump is re-read from its first missing offset up to ``max_rereads`` times; a gap still there then is
    taken as real (real Kafka leaves gaps after compaction and transaction markers) and passed over."""

    def __init__(self, group: str = "", max_rereads: int = 3) -> None:
        self._group = group
        self._max = max_rereads
        self._next: dict[Partition, int] = {}
        self._rereads: dict[tuple[Partition, int], int] = {}

    def reset(self) -> None:
        """Forget every position (new assignment: the committed offsets are the truth again)."""
        self._next.clear()
        self._rereads.clear()

    def cut(self, msgs: list[Message]) -> tuple[list[Message], tuple[Partition, int] | None]:
        """The messages up to the first skipped offset, and (partition, first missing offset) to seek back to,
        or all of them and None."""
        for i, m in enumerate(msgs):
            key = (m.topic() or "", m.partition() or 0)
            offset = m.offset() or 0
            expected = self._next.get(key)
            if expected is not None and offset > expected:
                tries = self._rereads.get((key, expected), 0)
                if tries < self._max:
                    self._rereads[(key, expected)] = tries + 1
                    return msgs[:i], (key, expected)
                self._rereads.pop((key, expected), None)
                OFFSET_GAPS.labels(self._group, "accepted").inc()
                log.warning("offsets skipped for good", extra={"topic": key[0], "from": expected, "to": offset})
            self._next[key] = offset + 1
        return msgs, None


class ConsumerLoop:
    """Consume topics with a consumer group; commit each offset only after the handler succeeded.

    ``handler`` takes a batch of messages of one poll; it may raise for the whole batch (then the policy of
    the error applies to the batch: RETRY re-runs it, DEAD_LETTER falls back to one message at a time so
    only the bad ones go to the dead-letter topic, STOP stops). Use :func:`per_message` to wrap a
    one-message handler.

    Between the attempts of a RETRY, the loop pauses every partition of its assignment (the batch's and the
    others: a RETRY error is a dependency that is down, and the batch's order must hold) and keeps polling
    through the back-off, so the member stays in its group (heartbeats, ``max.poll.interval.ms``) and answers
    rebalances. When the handler succeeds, the partitions are resumed and each is sought to the offset after the
    last message handled (or back to the first message a poll returned meanwhile), so nothing is skipped or
    reordered. A rebalance that revokes or loses the partitions during a back-off ends the retry: the batch is
    left unhandled and uncommitted, and whichever member gets the partitions (this one, possibly) starts again
    at the committed offsets.
    """

    def __init__(
        self,
        *,
        name: str,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        handler: Callable[[list[Message]], None],
        policy: Callable[[BaseException], Policy] = default_policy,
        batch_size: int = 500,
        retry_backoff: tuple[float, float] = (0.2, 5.0),
        consumer_extra: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.group_id = group_id
        self._bootstrap = bootstrap
        self._handler = handler
        self._policy = policy
        self._batch_size = batch_size
        self._backoff = retry_backoff
        self._consumer_extra = consumer_extra or {}
        self._topics = sorted(set(topics))
        self._topics_changed = threading.Event()
        self._stop = threading.Event()
        self.ready = threading.Event()
        self.last_error: str | None = None
        self._gaps = GapGuard(group_id)
        # Retry state, touched only by the loop's thread (rebalance callbacks run inside its polls).
        self._generation = 0  # bumped on every revocation or loss of partitions
        self._paused: list[TopicPartition] = []
        self._rewind: dict[Partition, int] = {}  # first offset a poll returned during a back-off, per partition

    # -- control -------------------------------------------------------------------------------------------
    def set_topics(self, topics: Iterable[str]) -> None:
        new = sorted(set(topics))
        if new != self._topics:
            self._topics = new
            self._topics_changed.set()

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    def stop(self) -> None:
        self._stop.set()

    # -- loop ----------------------------------------------------------------------------------------------
    def run(self) -> None:
        consumer = Consumer(consumer_config(self._bootstrap, self.group_id, **self._consumer_extra))
        try:
            self._subscribe(consumer)
            while not self._stop.is_set():
                if self._topics_changed.is_set():
                    self._topics_changed.clear()
                    self._subscribe(consumer)
                if not self._topics:
                    self.ready.set()
                    self._stop.wait(0.2)
                    continue
                msgs = consumer.consume(self._batch_size, timeout=0.2)
                batch, gap = self._gaps.cut([m for m in msgs if self._usable(m)])
                if batch:
                    self._process(consumer, batch)
                if gap is not None:
                    self._seek_back(consumer, gap)
        finally:
            consumer.close()

    def _seek_back(self, consumer: Consumer, gap: tuple[Partition, int]) -> None:
        (topic, partition), offset = gap
        OFFSET_GAPS.labels(self.group_id, "reread").inc()
        extra = {"group": self.group_id, "topic": topic, "offset": offset}
        log.warning("a fetch skipped offsets, reading again", extra=extra)
        self._stop.wait(0.05)
        try:
            consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:  # no longer assigned: the next owner starts at the committed offset
            log.info("seek back not possible", extra={"group": self.group_id, "error": str(exc)})

    def _assigned(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        REBALANCES.labels(self.group_id, "assigned").inc()
        self._gaps.reset()
        self.ready.set()

    def _revoked(self, consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        REBALANCES.labels(self.group_id, "revoked").inc()
        self._drop_retry_state(consumer)

    def _lost(self, consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        REBALANCES.labels(self.group_id, "lost").inc()
        log.warning("partitions lost (this member left its group)", extra={"group": self.group_id})
        self._drop_retry_state(consumer)

    def _drop_retry_state(self, consumer: Consumer) -> None:
        """The partitions go (the loop uses the default, eager assignors: a revocation takes all of them): a retry
        in progress gives its batch up, and what it paused is resumed while still assigned, so no pause carries
        over to a later assignment, which starts at the committed offsets."""
        self._generation += 1
        paused, self._paused = self._paused, []
        self._rewind.clear()
        if paused:
            try:
                consumer.resume(paused)
            except KafkaException as exc:
                log.info("resume on revocation not possible", extra={"group": self.group_id, "error": str(exc)})

    def _subscribe(self, consumer: Consumer) -> None:
        if self._topics:
            # Ready once the group has assigned this member its share (possibly none of the partitions).
            consumer.subscribe(self._topics, on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost)
            log.info("subscribed", extra={"group": self.group_id, "topics": self._topics})
        else:
            consumer.unsubscribe()

    def _usable(self, msg: Message) -> bool:
        err = msg.error()
        if err is None:
            return True
        if err.code() not in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
            log.warning("consumer error", extra={"group": self.group_id, "error": err.str()})
        return False

    def _process(self, consumer: Consumer, batch: list[Message]) -> None:
        generation = self._generation
        try:
            self._attempts(consumer, batch, generation)
        finally:
            self._end_pause(consumer, batch, generation)

    def _attempts(self, consumer: Consumer, batch: list[Message], generation: int) -> None:
        attempt = 0
        while True:
            try:
                self._handler(batch)
                self._commit(consumer, batch)
                return
            except Exception as exc:
                policy = self._policy(exc)
                HANDLER_ERRORS.labels(self.group_id, policy.value).inc()
                self.last_error = f"{type(exc).__name__}: {exc}"
                if policy is Policy.RETRY and not self._stop.is_set():
                    attempt += 1
                    delay = backoff_delay(attempt, self._backoff)
                    log.warning(
                        "handler failed, retrying",
                        extra={"group": self.group_id, "error": self.last_error, "attempt": attempt},
                    )
                    if not self._back_off(consumer, delay, generation):
                        return
                    continue
                if policy is Policy.DEAD_LETTER:
                    self._one_by_one(consumer, batch, generation)
                    return
                log.error("handler failed, stopping", extra={"group": self.group_id, "error": self.last_error})
                raise StopConsuming(self.last_error) from exc

    def _one_by_one(self, consumer: Consumer, batch: list[Message], generation: int) -> None:
        for msg in batch:
            attempt = 0
            while True:
                try:
                    self._handler([msg])
                    break
                except Exception as exc:
                    policy = self._policy(exc)
                    if policy is Policy.DEAD_LETTER:
                        self._dead_letter(msg, exc)
                        break
                    if policy is Policy.RETRY and not self._stop.is_set():
                        attempt += 1
                        if not self._back_off(consumer, backoff_delay(attempt, self._backoff), generation):
                            return
                        continue
                    raise StopConsuming(f"{type(exc).__name__}: {exc}") from exc
            self._commit(consumer, [msg])

    def _back_off(self, consumer: Consumer, delay: float, generation: int) -> bool:
        """Wait ``delay`` seconds before the next attempt, with the assignment paused, polling all along (so the
        member keeps its place in the group). False when the partitions were revoked or lost meanwhile: the
        batch is then given up, uncommitted."""
        if self._generation != generation:
            return False
        if not self._paused:
            self._paused = list(consumer.assignment())
            if self._paused:
                consumer.pause(self._paused)
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for msg in consumer.consume(self._batch_size, timeout=min(remaining, 0.2)):
                if msg.error() is None:  # not expected from paused partitions: read it again after the retry
                    key = (msg.topic() or "", msg.partition() or 0)
                    offset = msg.offset() or 0
                    self._rewind[key] = min(self._rewind.get(key, offset), offset)
            if self._generation != generation:
                log.info(
                    "partitions revoked during a retry; batch left to their next owner", extra={"group": self.group_id}
                )
                return False
        return True

    def _end_pause(self, consumer: Consumer, batch: list[Message], generation: int) -> None:
        """Resume what a retry paused and seek each partition to where reading must go on: after the last
        message of the batch, or back to the first message a poll returned during the back-off."""
        paused, rewind = self._paused, dict(self._rewind)
        self._paused = []
        self._rewind.clear()
        if not paused or self._generation != generation:
            return
        targets: dict[Partition, int] = {}
        for m in batch:
            key = (m.topic() or "", m.partition() or 0)
            targets[key] = max(targets.get(key, -1), (m.offset() or 0) + 1)
        for key, offset in rewind.items():
            targets[key] = min(targets.get(key, offset), offset)
        try:
            consumer.resume(paused)
            for (topic, partition), offset in sorted(targets.items()):
                consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:  # no longer assigned: the next owner starts at the committed offset
            log.info("resume after a retry not possible", extra={"group": self.group_id, "error": str(exc)})

    def _dead_letter(self, msg: Message, exc: BaseException) -> None:
        send_to_dead_letter(self._bootstrap, msg, f"{type(exc).__name__}: {exc}", self.group_id)

    def _commit(self, consumer: Consumer, batch: list[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in batch:
            key = (m.topic() or "", m.partition() or 0)
            last[key] = max(last.get(key, -1), m.offset() or 0)
            CONSUMED.labels(self.group_id, key[0]).inc()
        consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()], asynchronous=False)


_dlq_topics: set[str] = set()
_dlq_lock = threading.Lock()


def send_to_dead_letter(bootstrap: str, msg: Message, error: str, group_id: str) -> None:
    """Copy ``msg`` to ``<topic>.dlq`` (created on first use) with its key, value and headers, plus the reason
    and where it came from; returns once the broker accepted it."""
    topic = msg.topic() or "unknown"
    target = dead_letter(topic)
    with _dlq_lock:
        if target not in _dlq_topics:
            ensure_topics(bootstrap, [target])
            _dlq_topics.add(target)
    raw_headers = msg.headers() or []
    headers: Headers = list(raw_headers.items()) if isinstance(raw_headers, dict) else list(raw_headers)
    headers += [
        ("ondas-error", error[:1000].encode()),
        ("ondas-source-topic", topic.encode()),
        ("ondas-source-partition", str(msg.partition()).encode()),
        ("ondas-source-offset", str(msg.offset()).encode()),
        ("ondas-consumer-group", group_id.encode()),
    ]
    log.warning(
        "message dead-lettered",
        extra={"group": group_id, "topic": topic, "offset": msg.offset(), "reason": error},
    )
    get_producer(bootstrap).send_and_wait(target, msg.value() or b"", msg.key(), headers)


def per_message(handler: Callable[[Message], None]) -> Callable[[list[Message]], None]:
    """Adapt a one-message handler to :class:`ConsumerLoop`."""

    def handle(batch: list[Message]) -> None:
        for msg in batch:
            handler(msg)

    return handle


def wait_for_broker(bootstrap: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    admin = AdminClient(common_config(bootstrap))
    while True:
        try:
            admin.list_topics(timeout=2)
            return
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
