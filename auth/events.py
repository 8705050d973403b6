"""auth's tenancy outbox relay: publishes the tenancy events that tenant changes wrote to ``tenancy_outbox`` (in
the same transaction as the change, see :mod:`auth.store_postgres`), in order, at least once.

- For a CREATE, the tenant's topics come first: whatever a former tenant of that name left is deleted, then the
  platform's per-tenant topics are created (and the row remembers that this is done); then the event is
  published. For a DELETE, the event is published, then the tenant's topics are deleted (best effort, as
  creating the tenant again deletes what is left).
- A row is marked sent only after the broker accepted its event: a crash in between publishes it again on the
  next run, so consumers see a CREATE or DELETE twice at most in a row (``ondas.tenancy`` handles both
  idempotently). An event's Kafka timestamp is the time its change was committed, not the time it was relayed.
- Publishing happens in the request that made the change, straight after its commit (so a new tenant's topics
  exist and its event is out when the request returns), and again by a thread in every auth worker
  (:meth:`TenancyRelay.start`) and once at start-up (``auth.app.prepare``), which publish whatever a crash or a
  broker outage left pending. One relay at a time per database (a PostgreSQL advisory lock), so the events keep
  their order whichever process publishes them.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any, Protocol

import psycopg
from confluent_kafka import KafkaException
from prometheus_client import Counter

from auth.store_postgres import RELAY_LOCK, mark_sent, mark_topics_ready, pending_tenancy_events, prune_sent
from ondas.contracts import TenancyEvent
from ondas.kafka import delete_tenant_topics, ensure_topics
from ondas.topics import DEVICE_DATA, DEVICE_EVENTS, DEVICE_LIVENESS, TENANCY_TOPIC, tenant_topics

log = logging.getLogger("auth.events")

PUBLISHED = Counter("auth_tenancy_events_published_total", "Tenancy events of the outbox the broker accepted")
RELAY_ERRORS = Counter("auth_tenancy_outbox_errors_total", "Relay rounds that failed (retried)")

#: The topics every tenant has from its creation on.
TENANT_SUBJECTS = [DEVICE_DATA, DEVICE_EVENTS, DEVICE_LIVENESS]


class Publisher(Protocol):
    def send(
        self,
        topic: str,
        value: bytes,
        key: str | bytes | None = None,
        headers: Any = None,
        timestamp_ms: int | None = None,
    ) -> Future[Any]: ...


class TenancyRelay:
    def __init__(
        self,
        db_url: str,
        publisher: Publisher,
        bootstrap: str,
        poll_interval: float = 2.0,
        send_timeout: float = 30.0,
        lock_timeout_seconds: int = 60,
    ) -> None:
        self._db_url = db_url
        self._publisher = publisher
        self._bootstrap = bootstrap
        self._poll = poll_interval
        self._send_timeout = send_timeout
        self._lock_timeout = lock_timeout_seconds
        self._lock = threading.Lock()  # one drain at a time in this process (they share the connection)
        self._conn: psycopg.Connection[Any] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    # -- topics ----------------------------------------------------------------------------------------------
    def ensure_topics(self, tenant: str) -> None:
        """Create the tenancy topic and ``tenant``'s topics where missing (an existing tenant: nothing else)."""
        ensure_topics(self._bootstrap, [TENANCY_TOPIC, *tenant_topics(tenant, TENANT_SUBJECTS)])

    def _fresh_topics(self, tenant: str) -> None:
        # A new tenant starts with no topics from before: whatever a former tenant of this name left goes.
        delete_tenant_topics(self._bootstrap, tenant)
        self.ensure_topics(tenant)

    # -- relaying --------------------------------------------------------------------------------------------
    def drain(self) -> int:
        """Publish every pending event, oldest first, and return how many were published. Raises when the
        broker or the database fails; what was not published stays pending (and keeps its place)."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("SELECT pg_advisory_lock(%s)", (RELAY_LOCK,))
                try:
                    return self._drain(conn)
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (RELAY_LOCK,))
            except (psycopg.OperationalError, psycopg.InterfaceError):
                self._close_connection()  # reconnect on the next round
                raise

    def _drain(self, conn: psycopg.Connection[Any]) -> int:
        published = 0
        while True:
            rows = pending_tenancy_events(conn, 100)
            if not rows:
                break
            for row in rows:
                if row.kind == "CREATE" and not row.topics_ready:
                    self._fresh_topics(row.tenant)
                    mark_topics_ready(conn, row.seq)
                event = TenancyEvent(type=row.kind, tenant=row.tenant)  # type: ignore[arg-type]
                self._publisher.send(
                    TENANCY_TOPIC, event.to_bytes(), key=row.tenant, timestamp_ms=row.created_ms
                ).result(self._send_timeout)
                if row.kind == "DELETE":
                    self._delete_topics(row.tenant)
                mark_sent(conn, row.seq)
                PUBLISHED.inc()
                published += 1
                log.info("tenancy event published", extra={"type": row.kind, "tenant": row.tenant, "seq": row.seq})
        if published:
            prune_sent(conn)
        self.last_error = None
        return published

    def _delete_topics(self, tenant: str) -> None:
        try:
            topics = delete_tenant_topics(self._bootstrap, tenant)
        except KafkaException:
            # Not fatal: the tenant is gone, and creating it again deletes what is left.
            log.exception("could not delete the deleted tenant's topics", extra={"tenant": tenant})
            return
        log.info("deleted tenant's topics deleted", extra={"tenant": tenant, "topics_deleted": topics})

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._db_url, autocommit=True)
            self._conn.execute(f"SET lock_timeout = '{int(self._lock_timeout)}s'")
        return self._conn

    def _close_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # -- the background thread -------------------------------------------------------------------------------
    def start(self) -> None:
        """Publish what is pending every ``poll_interval`` seconds on a thread of this process."""
        self._thread = threading.Thread(target=self._run, name="auth-tenancy-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        backoff = self._poll
        while not self._stop.is_set():
            try:
                self.drain()
                backoff = self._poll
            except Exception as exc:  # noqa: BLE001  (any failure: retried; nothing is lost)
                RELAY_ERRORS.inc()
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("tenancy outbox relay failed; retrying", extra={"error": self.last_error})
                backoff = min(max(backoff, 0.5) * 2, 30.0)
            self._stop.wait(backoff)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (if started) and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            self._close_connection()
