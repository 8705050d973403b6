from __future__ import annotations

import subprocess
from typing import Any

import requests

from tests.waiting import poll  # noqa: F401  (re-exported for the tests)


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
