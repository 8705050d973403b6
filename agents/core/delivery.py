"""Waiting until Kafka accepted a record, re-sending it while it does not (the agents acknowledge a device's
message, or a broker log line, only then)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ondas.kafka import backoff_delay


async def until_accepted(
    delivery: Future[Any],
    resend: Callable[[], Future[Any]],
    backoff: tuple[float, float],
    on_retry: Callable[[Exception], None],
) -> None:
    """Await ``delivery``; while Kafka refuses it (or the producer is unavailable), call ``on_retry``, back off
    and ``resend``. Runs until accepted: a stop cancels the awaiting task."""
    attempt = 0
    while True:
        try:
            await asyncio.wrap_future(delivery)
            return
        except Exception as exc:  # noqa: BLE001  (Unavailable from the producer, or a produce error)
            attempt += 1
            on_retry(exc)
            await asyncio.sleep(backoff_delay(attempt, backoff))
            delivery = resend()
