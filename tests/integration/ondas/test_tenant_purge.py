"""ondas.tenancy.TenantPurge on the real broker: one purge per DELETE event, told whether auth has the tenant
again, retried while it fails, and not repeated by the next process of the same group."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from ondas.contracts import TenancyEvent
from ondas.errors import Unavailable
from ondas.kafka import Producer, ensure_topics
from ondas.tenancy import TenantPurge
from ondas.topics import TENANCY_TOPIC
from tests.auth_stub import AuthStub
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def announce(bootstrap: str, kind: str, tenant: str) -> None:
    p = Producer(bootstrap)
    try:
        p.send_and_wait(TENANCY_TOPIC, TenancyEvent(type=kind, tenant=tenant).to_bytes(), key=tenant)  # type: ignore[arg-type]
    finally:
        p.close()


class Recorder:
    """Records each purge; the first purge of ``fail_once`` raises (the tenancy topic is shared by the whole
    session, so other tests' DELETE events come through too)."""

    def __init__(self, fail_once: str | None = None) -> None:
        self.calls: list[tuple[str, float, bool]] = []
        self.fail_once = fail_once
        self.lock = threading.Lock()

    def __call__(self, tenant: str, deleted_at: float, recreated: bool) -> None:
        with self.lock:
            self.calls.append((tenant, deleted_at, recreated))
            if tenant == self.fail_once:
                self.fail_once = None
                raise Unavailable("the store is away")

    def of(self, tenant: str) -> list[tuple[str, float, bool]]:
        with self.lock:
            return [c for c in self.calls if c[0] == tenant]


def test_each_delete_is_purged_once_per_group(kafka_bootstrap: str) -> None:
    ensure_topics(kafka_bootstrap, [TENANCY_TOPIC])
    group, gone, back = f"purge-{uuid.uuid4().hex[:8]}", f"g{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
    auth = AuthStub([back])
    first = Recorder(fail_once=gone)
    purge = TenantPurge(service="test", auth_url=auth.url, bootstrap=kafka_bootstrap, purge=first, group_id=group)
    try:
        before = time.time()
        announce(kafka_bootstrap, "CREATE", gone)
        announce(kafka_bootstrap, "DELETE", gone)
        announce(kafka_bootstrap, "DELETE", back)  # deleted, and auth has a tenant of that name again
        purge.start()
        wait_for(lambda: len(first.of(back)) == 1, timeout=60, what="the second purge")
        # The first purge failed once and ran again; CREATE events purge nothing.
        assert [c[2] for c in first.of(gone)] == [False, False]
        assert first.of(back)[0][2] is True
        assert all(before - 1 <= c[1] <= time.time() for c in first.calls if c[0] in (gone, back))
    finally:
        purge.stop()

    # The next process of the group starts after what was purged.
    later = f"l{uuid.uuid4().hex[:8]}"
    second = Recorder()
    purge = TenantPurge(service="test", auth_url=auth.url, bootstrap=kafka_bootstrap, purge=second, group_id=group)
    try:
        purge.start()
        announce(kafka_bootstrap, "DELETE", later)
        wait_for(lambda: second.of(later), timeout=60, what="the next purge")
        assert second.of(gone) == [] and second.of(back) == []
    finally:
        purge.stop()
        auth.close()
