from __future__ import annotations

import pytest

from ondas.health import Health

pytestmark = pytest.mark.unit


def test_ready_needs_every_check_to_pass() -> None:
    h = Health("svc")
    state = {"db": False}
    h.add_check("db", lambda: state["db"])
    ok, body = h.ready()
    assert not ok and body["checks"] == {"db": "failing"} and body["status"] == "not ready"
    state["db"] = True
    assert h.ready()[0]


def test_a_check_that_raises_is_failing_and_says_why() -> None:
    h = Health("svc")

    def broken() -> bool:
        raise ConnectionError("refused")

    h.add_check("redis", broken)
    ok, body = h.ready()
    assert not ok and body["checks"]["redis"] == "failing: ConnectionError: refused"


def test_hold_keeps_readiness_off_until_released() -> None:
    """A process that serves health before registering its checks must not look ready in between."""
    h = Health("svc")
    release = h.hold()
    ok, body = h.ready()
    assert not ok and body["checks"] == {"startup": "failing"}
    h.add_check("broker", lambda: True)
    assert not h.ready()[0]
    release()
    ok, body = h.ready()
    assert ok and body["checks"] == {"startup": "ok", "broker": "ok"}
