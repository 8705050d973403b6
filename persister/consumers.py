"""Kafka glue of the persister: the dead-letter port, backed by :func:`ondas.kafka.send_to_dead_letter` (the same
headers as the consumer loop writes). The service calls it itself so that one bad message does not make the loop
re-run the whole batch one message at a time.
"""

from __future__ import annotations

from typing import Any

from ondas.kafka import send_to_dead_letter


class KafkaDeadLetter:
    def __init__(self, bootstrap: str, group_id: str) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id

    def send(self, msg: Any, reason: str) -> None:
        send_to_dead_letter(self._bootstrap, msg, f"ContractError: {reason}", self._group_id)
