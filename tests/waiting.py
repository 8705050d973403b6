"""Waiting in tests: poll a condition (never sleep a fixed time) and ask whether an HTTP endpoint is up."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests


def wait_for(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition", interval: float = 0.05) -> Any:
    """Call ``check`` until it returns something truthy and return that; fail naming ``what`` after ``timeout``.
    Checks that cost the server real work (counting a large collection) want a longer ``interval``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


T = TypeVar("T")


def poll(fetch: Callable[[], T], until: Callable[[T], bool], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Call ``fetch`` until ``until(result)`` holds; return the result (fail with the last one otherwise)."""
    deadline = time.monotonic() + timeout
    result = fetch()
    while not until(result):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last result: {result!r}")
        time.sleep(interval)
        result = fetch()
    return result


def http_ok(url: str) -> bool:
    """True when ``url`` answers 200 (e.g. a service's /health/ready)."""
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False
