"""Kafka glue of the persister: the dead-letter port.

:class:`KafkaDeadLetter` copies a rejected message to ``<topic>.dlq`` with the same headers that
:class:`ondas.kafka.ConsumerLoop` writes when it dead-letters (``ondas-error``, ``ondas-source-topic``,
``ondas-source-partition``, ``ondas-source-offset``, ``ondas-consumer-group``), so both paths look alike
to whoever drains the dead-letter topics. The service calls it itself so that one bad message does not
make the loop re-run the whole batch one message at a time.
"""

from __future__ import annotations

import threading
from typing import Any

from ondas.kafka import Headers, ensure_topics, get_producer
from ondas.topics import dead_letter


class KafkaDeadLetter:
    def __init__(self, bootstrap: str, group_id: str) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._ensured: set[str] = set()
        self._lock = threading.Lock()

    def send(self, msg: Any, reason: str) -> None:
        source = msg.topic() or "unknown"
        target = dead_letter(source)
        with self._lock:
            if target not in self._ensured:
                ensure_topics(self._bootstrap, [target])
                self._ensured.add(target)
        raw = msg.headers() or []
        headers: Headers = list(raw.items()) if isinstance(raw, dict) else list(raw)
        headers += [
            ("ondas-error", f"ContractError: {reason}"[:1000].encode()),
            ("ondas-source-topic", source.encode()),
            ("ondas-source-partition", str(msg.partition()).encode()),
            ("ondas-source-offset", str(msg.offset()).encode()),
            ("ondas-consumer-group", self._group_id.encode()),
        ]
        get_producer(self._bootstrap).send_and_wait(target, msg.value() or b"", msg.key(), headers)
