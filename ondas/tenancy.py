"""Tenancy bootstrap: learn the tenants from auth at start, then follow ``dojot-management.dojot.tenancy``
so that a tenant created at run time works without restarting anything; and :class:`TenantPurge`, through
which each service removes what it stored of a deleted tenant.

auth publishes the tenancy events at least once (its outbox), so an event may come twice in a row. Both readers
take that as it is: the tracker keeps a set (a repeated CREATE or DELETE changes nothing, and the topics it
creates exist already), and a purge is idempotent and, for a tenant that exists again, removes only what it can
date before the event's timestamp (the time of the deletion, however late the event was relayed)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable

import requests
from confluent_kafka import Message

from ondas.contracts import TenancyEvent
from ondas.errors import Unavailable
from ondas.kafka import ConsumerLoop, ensure_topics, per_message
from ondas.service_identity import service_authorization
from ondas.settings import service_identity
from ondas.tenant import validate_tenant
from ondas.topics import TENANCY_TOPIC, topic

log = logging.getLogger("ondas.tenancy")


def fetch_tenants(auth_url: str, timeout: float = 60.0) -> set[str]:
    """Ask auth for the tenants, retrying while auth is not reachable yet. The call carries this process's
    service identity (:func:`ondas.settings.service_identity`) when it has one."""
    deadline = time.monotonic() + timeout
    url = auth_url.rstrip("/") + "/admin/tenants"
    identity = service_identity()
    headers = {"Authorization": service_authorization(*identity)} if identity else {}
    while True:
        try:
            resp = requests.get(url, headers=headers, timeout=5)
            resp.raise_for_status()
            return {validate_tenant(t) for t in resp.json()["tenants"]}
        except (requests.RequestException, KeyError, ValueError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not list tenants from {url}: {exc}") from exc
            time.sleep(0.5)


class _TenancyReader:
    """Reads the tenancy topic on a thread of its own with one consumer group; ``_handle`` takes each event."""

    def __init__(self, *, name: str, bootstrap: str, group_id: str) -> None:
        self._bootstrap = bootstrap
        self.group_id = group_id
        self._loop = ConsumerLoop(
            name=name,
            bootstrap=bootstrap,
            group_id=group_id,
            topics=[TENANCY_TOPIC],
            handler=per_message(self._handle),
        )
        self._thread: threading.Thread | None = None

    def _handle(self, msg: Message) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        self._loop.run()

    def _start_thread(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop reading and wait (up to ``timeout``) until the event being handled is done, so the caller may
        release what the handler uses."""
        self._loop.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


class TenancyTracker(_TenancyReader):
    """Keeps the set of tenants current and tells ``on_change`` about every change.

    ``subjects`` are the subjects this service uses; their topics are created for each tenant before
    ``on_change`` hears of it, so consumers can subscribe at once.
    """

    def __init__(
        self,
        *,
        service: str,
        auth_url: str,
        bootstrap: str,
        subjects: Iterable[str],
        on_change: Callable[[frozenset[str]], None],
    ) -> None:
        # Every tracker follows every tenancy event, so each one has a consumer group of its own.
        group = f"{service}.tenancy.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        super().__init__(name=f"{service}-tenancy", bootstrap=bootstrap, group_id=group)
        self._auth_url = auth_url
        self._subjects = list(subjects)
        self._on_change = on_change
        self._lock = threading.Lock()
        self._tenants: frozenset[str] = frozenset()

    @property
    def tenants(self) -> frozenset[str]:
        return self._tenants

    @property
    def ready(self) -> bool:
        return self._loop.ready.is_set()

    def start(self) -> None:
        ensure_topics(self._bootstrap, [TENANCY_TOPIC])
        self._apply(add=fetch_tenants(self._auth_url))
        self._start_thread("tenancy")

    def _handle(self, msg: Message) -> None:
        event = TenancyEvent.parse(msg.value() or b"")
        log.info("tenancy event", extra={"type": event.type, "tenant": event.tenant})
        if event.type == "CREATE":
            self._apply(add={event.tenant})
        else:
            self._apply(remove={event.tenant})

    def _apply(self, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        with self._lock:
            new = (self._tenants | set(add)) - set(remove)
            if new == self._tenants:
                return
            created = new - self._tenants
            if created and self._subjects:
                ensure_topics(self._bootstrap, [topic(t, s) for t in created for s in self._subjects])
            self._tenants = frozenset(new)
        log.info("tenants changed", extra={"tenants": sorted(new)})
        self._on_change(self._tenants)


#: What a service's purge is told: the tenant, when it was deleted (epoch seconds, the event's Kafka
#: timestamp), and whether auth already has a tenant of that name again.
PurgeHandler = Callable[[str, float, bool], None]


class TenantPurge(_TenancyReader):
    """Removes what a service stored of a deleted tenant, once per DELETE event.

    It reads the tenancy topic with one durable consumer group per service (``<service>.tenant-purge``), in
    order, and commits an event only after ``purge`` returned: a crash re-runs the purge (so it must be
    idempotent), a restart does not replay purges already done, and of several processes of a service one
    handles each event. ``purge(tenant, deleted_at, recreated)``: when ``recreated`` is true, auth has a tenant of
    that name again (the service was away while the tenant was deleted and created again, or the group's offsets
    were lost and the topic is read from its start); the service must then remove only what it can date before
    ``deleted_at``, and never the new tenant's data.
    """

    def __init__(
        self, *, service: str, auth_url: str, bootstrap: str, purge: PurgeHandler, group_id: str | None = None
    ) -> None:
        super().__init__(
            name=f"{service}-tenant-purge", bootstrap=bootstrap, group_id=group_id or f"{service}.tenant-purge"
        )
        self._auth_url = auth_url
        self._purge = purge
        self.failed = False

    @property
    def ready(self) -> bool:
        return self._loop.ready.is_set() and not self.failed

    def start(self) -> None:
        ensure_topics(self._bootstrap, [TENANCY_TOPIC])
        self._start_thread("tenant-purge")

    def _run(self) -> None:
        try:
            self._loop.run()
        except Exception:
            self.failed = True
            log.exception("tenant purge stopped")

    def _handle(self, msg: Message) -> None:
        event = TenancyEvent.parse(msg.value() or b"")
        if event.type != "DELETE":
            return
        kind, stamp = msg.timestamp()
        deleted_at = stamp / 1000.0 if kind and stamp > 0 else time.time()
        try:
            current = fetch_tenants(self._auth_url, timeout=30.0)
        except RuntimeError as exc:
            raise Unavailable(f"cannot ask auth whether tenant {event.tenant!r} exists again: {exc}") from exc
        recreated = event.tenant in current
        log.info("purging a deleted tenant", extra={"tenant": event.tenant, "recreated": recreated})
        self._purge(event.tenant, deleted_at, recreated)
