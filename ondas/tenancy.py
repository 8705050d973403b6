"""Tenancy bootstrap: learn the tenants from auth at start, then follow ``dojot-management.dojot.tenancy``
so that a tenant created at run time works without restarting anything."""

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


class TenancyTracker:
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
        self._auth_url = auth_url
        self._bootstrap = bootstrap
        self._subjects = list(subjects)
        self._on_change = on_change
        self._lock = threading.Lock()
        self._tenants: frozenset[str] = frozenset()
        # Every tracker follows every tenancy event, so each one has a consumer group of its own.
        group = f"{service}.tenancy.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._loop = ConsumerLoop(
            name=f"{service}-tenancy",
            bootstrap=bootstrap,
            group_id=group,
            topics=[TENANCY_TOPIC],
            handler=per_message(self._handle),
        )
        self._thread: threading.Thread | None = None

    @property
    def tenants(self) -> frozenset[str]:
        return self._tenants

    @property
    def ready(self) -> bool:
        return self._loop.ready.is_set()

    def start(self) -> None:
        ensure_topics(self._bootstrap, [TENANCY_TOPIC])
        self._apply(add=fetch_tenants(self._auth_url))
        self._thread = threading.Thread(target=self._loop.run, name="tenancy", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following the tenancy topic and wait (up to ``timeout``) until a change being applied is done,
        so the caller may release what ``on_change`` uses."""
        self._loop.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

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
