"""What the certificate authority publishes, and the relay that publishes it.

Events are written to the ``outbox`` table in the transaction that makes the change (so an event exists exactly
when its change was committed) and published by :class:`OutboxRelay` afterwards, at least once, in commit order:

- topic ``<tenant>.dojot.x509-identity-mgmt.certificates``, key the certificate's fingerprint;
- headers ``content-type: application/json``, ``ondas-tenant: <tenant>``;
- payload::

    {"event": "certificate.issued" | "certificate.registered" | "certificate.revoked" | "certificate.owner-changed",
     "meta": {"service": "<tenant>", "timestamp": <epoch ms>, "user": "<who did it>"},
     "data": {"fingerprint": "AB:...", "serialNumber": "5F...", "subjectDN": "O=..., CN=admin:a1b2c3",
              "issuedByDojotPki": true, "autoRegistered": false, "caFingerprint": null,
              "belongsTo": {"device": "a1b2c3"}, "previousBelongsTo": {...} (owner-changed only),
              "notAfter": "2027-12-07T00:00:00.000Z"}}

``certificate.revoked`` is published when a certificate stops being accepted: revoked by ``DELETE
/certificates/{fp}`` (platform-issued ones are also on the CRL from then on), or removed with its trusted CA.

The relay runs in a daemon thread of each API process; a session advisory lock makes one of them publish and the
others stand by.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any, Protocol

import psycopg
from prometheus_client import Counter, Gauge
from psycopg import sql

from ondas.topics import CERTIFICATES, topic
from x509_mgmt.models import CertificateRecord, iso
from x509_mgmt.store_postgres import OUTBOX_CHANNEL, RELAY_LOCK, count_pending, mark_published, pending

log = logging.getLogger("x509_mgmt.events")

SUBJECT = CERTIFICATES
ISSUED = "certificate.issued"
REGISTERED = "certificate.registered"
REVOKED = "certificate.revoked"
OWNER_CHANGED = "certificate.owner-changed"

RELAYED = Counter("x509_mgmt_outbox_published_total", "Certificate events the broker accepted")
RELAY_ERRORS = Counter("x509_mgmt_outbox_errors_total", "Failed relay rounds (retried)")
PENDING = Gauge("x509_mgmt_outbox_pending", "Certificate events waiting to be published (last seen)")


def certificates_topic(tenant: str) -> str:
    return topic(tenant, SUBJECT)


def certificate_event(
    event: str,
    cert: CertificateRecord,
    user: str,
    at_ms: int,
    previous_belongs_to: dict[str, Any] | None = None,
) -> tuple[str, str, bytes]:
    """(topic, key, payload) of an event about ``cert``."""
    data: dict[str, Any] = {
        "fingerprint": cert.fingerprint,
        "serialNumber": cert.serial.upper(),
        "subjectDN": cert.subject_dn,
        "issuedByDojotPki": cert.issued_by_platform,
        "autoRegistered": cert.auto_registered,
        "caFingerprint": cert.ca_fingerprint,
        "belongsTo": dict(cert.belongs_to),
        "notAfter": iso(cert.not_after),
    }
    if previous_belongs_to is not None:
        data["previousBelongsTo"] = previous_belongs_to
    body = {"event": event, "meta": {"service": cert.tenant, "timestamp": at_ms, "user": user}, "data": data}
    return certificates_topic(cert.tenant), cert.fingerprint, json.dumps(body, separators=(",", ":")).encode()


class Publisher(Protocol):
    def send(self, topic: str, value: bytes, key: str | bytes | None = None, headers: Any = None) -> Future[Any]: ...


class OutboxRelay:
    """Publishes the outbox, oldest first; a row is deleted only after the broker accepted its message."""

    def __init__(
        self,
        db_url: str,
        publisher: Publisher,
        ensure_topics: Callable[[Iterable[str]], None],
        poll_interval: float = 1.0,
        batch_size: int = 200,
        send_timeout: float = 30.0,
        on_round: Callable[[], None] | None = None,
    ) -> None:
        self._db_url = db_url
        self._publisher = publisher
        self._ensure_topics = ensure_topics
        self._poll = poll_interval
        self._batch = batch_size
        self._send_timeout = send_timeout
        self._on_round = on_round
        self._known_topics: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = "starting"
        self.last_error: str | None = None
        self.heartbeat = time.monotonic()

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "last_error": self.last_error}

    def alive(self) -> bool:
        return time.monotonic() - self.heartbeat < max(30.0, 10 * self._poll)

    def start(self) -> OutboxRelay:
        self._thread = threading.Thread(target=self.run, name="x509-outbox-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        backoff = self._poll
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._db_url, autocommit=True) as conn:
                    self._lead(conn)
                backoff = self._poll
            except Exception as exc:  # noqa: BLE001  (any failure: reconnect and retry; nothing is lost)
                RELAY_ERRORS.inc()
                self.state = "retrying"
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("outbox relay failed; retrying", extra={"error": self.last_error})
                self.heartbeat = time.monotonic()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
        self.state = "stopped"

    def _lead(self, conn: psycopg.Connection[Any]) -> None:
        while not self._try_lock(conn):
            self.state = "standby"
            self.heartbeat = time.monotonic()
            self._maintain()
            if self._stop.wait(self._poll):
                return
        log.info("outbox relay active")
        self.state = "active"
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(OUTBOX_CHANNEL)))
        try:
            while not self._stop.is_set():
                self.heartbeat = time.monotonic()
                self._maintain()
                if self.drain(conn) == 0:
                    for _ in conn.notifies(timeout=self._poll, stop_after=1):
                        pass
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (RELAY_LOCK,))

    def _maintain(self) -> None:
        if self._on_round is None:
            return
        try:
            self._on_round()
        except Exception as exc:  # noqa: BLE001  (periodic upkeep; retried next round)
            log.warning("periodic CRL upkeep failed", extra={"error": f"{type(exc).__name__}: {exc}"})

    @staticmethod
    def _try_lock(conn: psycopg.Connection[Any]) -> bool:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,)).fetchone()
        return bool(row and row[0])

    def drain(self, conn: psycopg.Connection[Any]) -> int:
        """Publish every pending row, oldest first; returns how many were published."""
        published = 0
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            rows = pending(conn, self._batch)
            if not rows:
                break
            new_topics = {r.topic for r in rows} - self._known_topics
            if new_topics:
                self._ensure_topics(sorted(new_topics))
                self._known_topics |= new_topics
            futures = [
                self._publisher.send(
                    r.topic,
                    r.payload,
                    r.key,
                    [("content-type", b"application/json"), ("ondas-tenant", r.tenant.encode())],
                )
                for r in rows
            ]
            done: list[int] = []
            try:
                for row, fut in zip(rows, futures, strict=True):
                    fut.result(self._send_timeout)
                    done.append(row.seq)
            finally:
                mark_published(conn, done)
                RELAYED.inc(len(done))
                published += len(done)
            self.last_error = None
        PENDING.set(count_pending(conn))
        return published
