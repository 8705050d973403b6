from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests

T = TypeVar("T")


def poll(fetch: Callable[[], T], until: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Call ``fetch`` until ``until(result)`` holds; return the result (fail with the last one otherwise)."""
    deadline = time.monotonic() + timeout
    result = fetch()
    while not until(result):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last result: {result!r}")
        time.sleep(0.2)
        result = fetch()
    return result


def api(method: str, url: str, token: str | None = None, **kw: Any) -> requests.Response:
    headers = kw.pop("headers", {})
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.request(method, url, headers=headers, timeout=15, **kw)


def mosquitto_pub(port: int, username: str, topic: str, message: str | bytes, qos: int = 1) -> None:
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", username, "-t", topic, "-q", str(qos)]
    if isinstance(message, bytes):
        subprocess.run([*args, "-s"], input=message, check=True, timeout=15, capture_output=True)
    else:
        subprocess.run([*args, "-m", message], check=True, timeout=15, capture_output=True)


class Subscriber:
    """A real ``mosquitto_sub`` process; ``lines()`` returns what it printed so far."""

    def __init__(self, port: int, username: str, topic: str) -> None:
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-u", username, "-t", topic, "-q", "1", "-v"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._out: list[str] = []
        import threading

        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._out.append(line.rstrip("\n"))

    def lines(self) -> list[str]:
        return list(self._out)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
