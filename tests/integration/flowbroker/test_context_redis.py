"""The context store on the real Redis: values by layer, and updates from concurrent workers never lost."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from flowbroker.context_redis import RedisContextStore

pytestmark = pytest.mark.integration


def test_concurrent_updates_are_not_lost(redis_url: str) -> None:
    stores = [RedisContextStore(redis_url) for _ in range(3)]
    key = f"node:t{uuid.uuid4().hex[:8]}:flow:node:data"

    def add(old: Any) -> tuple[Any, Any]:
        new = (old or 0) + 1
        return new, new

    def work(store: RedisContextStore) -> None:
        for _ in range(100):
            store.update(key, add)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert stores[0].get(key) == 300
    for s in stores:
        s.close()


def test_layers_and_tenant_drop(redis_url: str) -> None:
    store = RedisContextStore(redis_url)
    tenant = "t" + uuid.uuid4().hex[:8]
    store.put(f"tenant:{tenant}:limits", {"max": 1})
    store.put(f"flow:{tenant}:f1:limits", {"max": 2})
    store.put(f"node:{tenant}:f1:n1:data", [1, 2])
    assert store.get(f"tenant:{tenant}:limits") == {"max": 1}
    assert store.get(f"flow:{tenant}:f1:limits") == {"max": 2}
    assert store.get(f"tenant:{tenant}:missing") is None
    assert store.drop_tenant(tenant) == 3
    assert store.get(f"node:{tenant}:f1:n1:data") is None
    store.close()
