"""What the engine publishes: the outputs of the nodes of one batch, queued with the process's producer and waited
for together before the batch's offsets are committed (at least once: a redelivered message produces its outputs
again, with the same ``ondas-flow-output-id`` header)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from typing import Any

from confluent_kafka import Message
from prometheus_client import Counter

from ondas.errors import Unavailable
from ondas.kafka import Producer
from ondas.topics import topic

MESSAGES_OUT = Counter(
    "flowbroker_messages_out_total", "Messages flows produced and the broker accepted", ["tenant", "flow", "subject"]
)


class BatchOutputs:
    """The outputs of one batch. Thread-safe (flows run side by side); :meth:`wait` raises Unavailable when the
    broker did not take one of them, so the consumer loop runs the batch again."""

    def __init__(self, producer: Producer, ensure: Any = None) -> None:
        self._producer = producer
        self._ensure = ensure
        self._lock = threading.Lock()
        self._pending: list[tuple[Future[Message], str, str, str]] = []

    def for_flow(self, tenant: str, flow_id: str) -> FlowOutputs:
        return FlowOutputs(self, tenant, flow_id)

    def send(self, tenant: str, flow_id: str, subject: str, key: str, value: dict[str, Any], headers: Any) -> None:
        name = topic(tenant, subject)
        if self._ensure is not None:
            self._ensure(name)
        fut = self._producer.send(name, json.dumps(value, separators=(",", ":")).encode(), key, headers)
        with self._lock:
            self._pending.append((fut, tenant, flow_id, subject))

    def wait(self, timeout: float = 30.0) -> int:
        with self._lock:
            pending, self._pending = self._pending, []
        failed: list[str] = []
        for fut, tenant, flow_id, subject in pending:
            try:
                fut.result(timeout)
                MESSAGES_OUT.labels(tenant, flow_id, subject).inc()
            except Exception as exc:  # noqa: BLE001 - any failure means the batch must run again
                failed.append(str(exc))
        if failed:
            raise Unavailable(f"{len(failed)} flow outputs not accepted by the broker: {failed[0]}")
        return len(pending)


class FlowOutputs:
    def __init__(self, batch: BatchOutputs, tenant: str, flow_id: str) -> None:
        self._batch, self._tenant, self._flow = batch, tenant, flow_id

    def send(self, topic_subject: str, key: str, value: dict[str, Any], headers: list[tuple[str, str]]) -> None:
        self._batch.send(self._tenant, self._flow, topic_subject, key, value, headers)
