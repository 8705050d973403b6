"""The outbox relay: publishes the events the API committed to the ``outbox`` table, in order.

- One active relay per database: the relay holding the session advisory lock ``RELAY_LOCK`` publishes;
  any other waits as a standby and takes over when the lock is freed (its holder died or stopped).
- It LISTENs on the outbox channel and also polls, so a lost notification only delays publishing.
- A row is deleted only after the broker accepted its message (at-least-once): a crash between publish
  and delete publishes that message again on restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, Protocol

import psycopg
from prometheus_client import Counter, Gauge
from psycopg import sql

from device_manager.store_postgres import OUTBOX_CHANNEL, RELAY_LOCK, count_pending, mark_published, pending

log = logging.getLogger("device_manager.events")

RELAYED = Counter("device_manager_outbox_published_total", "Outbox events the broker accepted")
RELAY_ERRORS = Counter("device_manager_outbox_errors_total", "Failed relay rounds (retried)")
PENDING = Gauge("device_manager_outbox_pending", "Outbox events waiting to be published (last seen)")


class Publisher(Protocol):
    def send(self, topic: str, value: bytes, key: str | bytes | None = None) -> Future[Any]: ...


class OutboxRelay:
    def __init__(
        self,
        db_url: str,
        publisher: Publisher,
        ensure_topics: Callable[[Iterable[str]], None],
        poll_interval: float = 1.0,
        batch_size: int = 200,
        send_timeout: float = 30.0,
    ) -> None:
        self._db_url = db_url
        self._publisher = publisher
        self._ensure_topics = ensure_topics
        self._poll = poll_interval
        self._batch = batch_size
        self._send_timeout = send_timeout
        self._known_topics: set[str] = set()
        self.state = "starting"
        self.last_error: str | None = None
        self.heartbeat = time.monotonic()

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "last_error": self.last_error}

    def alive(self) -> bool:
        """The loop made progress recently (publishing, waiting for work, or standing by)."""
        return time.monotonic() - self.heartbeat < max(30.0, 10 * self._poll)

    def ready(self) -> bool:
        """Alive and either publishing or standing by (not retrying after a database or broker failure)."""
        return self.alive() and self.state in ("active", "standby")

    def run(self, stop: threading.Event) -> None:
        """Relay until ``stop`` is set. Database and broker failures are logged and retried."""
        backoff = self._poll
        while not stop.is_set():
            try:
                with psycopg.connect(self._db_url, autocommit=True) as conn:
                    self._lead(conn, stop)
                backoff = self._poll
            except Exception as exc:  # noqa: BLE001  (any failure: reconnect and retry; nothing is lost)
                RELAY_ERRORS.inc()
                self.state = "retrying"
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("outbox relay failed; retrying", extra={"error": self.last_error})
                self.heartbeat = time.monotonic()
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self.state = "stopped"

    def _lead(self, conn: psycopg.Connection[Any], stop: threading.Event) -> None:
        while not self._try_lock(conn):
            if self.state != "standby":
                log.info("another relay is active; standing by")
            self.state = "standby"
            self.heartbeat = time.monotonic()
            if stop.wait(self._poll):
                return
        log.info("outbox relay active")
        self.state = "active"
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(OUTBOX_CHANNEL)))
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            if self.drain(conn, stop) == 0:
                for _ in conn.notifies(timeout=self._poll, stop_after=1):
                    pass
        conn.execute("SELECT pg_advisory_unlock(%s)", (RELAY_LOCK,))

    @staticmethod
    def _try_lock(conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,)).fetchone()
        return bool(row and row[0])

    def drain(self, conn: psycopg.Connection[Any], stop: threading.Event | None = None) -> int:
        """Publish every pending row, oldest first; returns how many were published."""
        published = 0
        while stop is None or not stop.is_set():
            self.heartbeat = time.monotonic()
            rows = pending(conn, self._batch)
            if not rows:
                break
            new_topics = {r.topic for r in rows} - self._known_topics
            if new_topics:
                self._ensure_topics(sorted(new_topics))
                self._known_topics |= new_topics
            futures = [self._publisher.send(r.topic, r.payload, r.key) for r in rows]
            done: list[int] = []
            try:
                for row, fut in zip(rows, futures, strict=True):
                    fut.result(self._send_timeout)
                    done.append(row.seq)
            finally:
                # Whatever the broker accepted is done, even when a later message failed.
                mark_published(conn, done)
                RELAYED.inc(len(done))
                published += len(done)
            self.last_error = None
        PENDING.set(count_pending(conn))
        return published
