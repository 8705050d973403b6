"""The supervisor restarts a process that dies, and the platform serves again without anyone's help."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.e2e.helpers import api, poll

pytestmark = pytest.mark.e2e


def processes(platform) -> dict[str, dict]:
    status = json.loads(platform.ctl("status", "--format", "json", check=False).stdout)
    return {p["name"]: p for p in status["processes"]}


def test_a_killed_service_is_restarted(platform):
    token = platform.token()
    before = processes(platform)["history"]
    os.kill(before["pid"], signal.SIGKILL)

    after = poll(
        lambda: processes(platform)["history"],
        lambda p: p["pid"] != before["pid"] and p["restarts"] == before["restarts"] + 1 and p["healthy"],
        timeout=60,
    )
    assert after["alive"]
    r = poll(
        lambda: api("GET", f"{platform.gateway}/history/device/nothing/history?lastN=1", token),
        lambda r: r.status_code in (200, 404),
    )
    assert r.status_code in (200, 404)
