"""Running ``python -m kafka_ws`` as a real process and talking to it as clients do (requests, websockets,
python-socketio)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import websockets
from prometheus_client.parser import text_string_to_metric_families

from ondas.kafka import get_producer
from ondasctl.ports import free_port
from tests.waiting import http_ok, wait_for


class KafkaWsProcess:
    """One kafka_ws process on a free port; ``stop()`` sends SIGTERM and checks it exits 0."""

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_base = f"ws://127.0.0.1:{self.port}"
        self.log_file = log_file
        self._log = log_file.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kafka_ws"],
            env={**os.environ, **env, "KAFKA_WS_HTTP_PORT": str(self.port)},
            stdout=self._log,
            stderr=self._log,
        )

    def wait_ready(self, timeout: float = 60.0) -> KafkaWsProcess:
        wait_for(
            lambda: self.proc.poll() is not None or http_ok(f"{self.base}/health/ready"), timeout, "kafka_ws ready"
        )
        assert self.proc.poll() is None, self.log_file.read_text()[-3000:]
        return self

    def wait_live(self, timeout: float = 60.0) -> KafkaWsProcess:
        wait_for(lambda: http_ok(f"{self.base}/health/live"), timeout, "kafka_ws live")
        return self

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        self._log.close()
        return code

    def logs(self) -> str:
        return self.log_file.read_text()

    def ticket(self, token: str) -> str:
        resp = requests.get(f"{self.base}/kafka-ws/v1/ticket", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["ticket"])

    def socketio_token(self, token: str) -> str:
        resp = requests.get(f"{self.base}/stream/socketio", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["token"])

    def metric(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        text = requests.get(f"{self.base}/metrics", timeout=10).text
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def connections(self, tenant: str, interface: str = "websocket") -> int:
        """Open connections of ``tenant`` now (take it before connecting, then wait for it plus yours)."""
        return int(self.metric("kafka_ws_connections", tenant=tenant, interface=interface))

    def wait_connections(self, tenant: str, count: int, interface: str = "websocket") -> None:
        """Wait until ``tenant`` has at least ``count`` open connections (subscribed to the fan-out)."""
        wait_for(
            lambda: self.metric("kafka_ws_connections", tenant=tenant, interface=interface) >= count,
            30,
            f"{count} {interface} connections of {tenant}",
        )


def device_message(tenant: str, device: str, **attrs: Any) -> dict[str, Any]:
    return {"metadata": {"deviceid": device, "tenant": tenant, "timestamp": int(time.time() * 1000)}, "attrs": attrs}


def publish(bootstrap: str, topic: str, message: Any) -> None:
    get_producer(bootstrap).send_and_wait(topic, json.dumps(message).encode(), key=None)


def publish_many(bootstrap: str, topic: str, messages: list[Any]) -> None:
    producer = get_producer(bootstrap)
    futures = [producer.send(topic, json.dumps(m).encode()) for m in messages]
    for fut in futures:
        fut.result(30)


def topic_url(proc: KafkaWsProcess, topic: str, ticket: str | None, **params: str) -> str:
    from urllib.parse import urlencode

    query = {**({"ticket": ticket} if ticket is not None else {}), **params}
    return f"{proc.ws_base}/kafka-ws/v1/topics/{topic}" + (f"?{urlencode(query)}" if query else "")


async def close_code_of(url: str, timeout: float = 15.0) -> tuple[int | None, str]:
    """Connect, read until the server closes, and return the close code and reason it sent."""
    async with websockets.connect(url, open_timeout=10) as ws:
        try:
            async with asyncio.timeout(timeout):
                async for _ in ws:
                    pass
        except websockets.ConnectionClosed:
            pass
        received = ws.protocol.close_rcvd
        assert received is not None, "the server did not send a close frame"
        return received.code, received.reason


def close_code(url: str, timeout: float = 15.0) -> tuple[int | None, str]:
    return asyncio.run(close_code_of(url, timeout))


async def receive(ws: Any, count: int, timeout: float = 60.0) -> list[Any]:
    """The next ``count`` messages of ``ws``, decoded."""
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            out.append(json.loads(await ws.recv()))
    return out


async def nothing_more(ws: Any, wait: float = 0.5) -> bool:
    """True when ``ws`` receives nothing within ``wait`` seconds."""
    try:
        await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return True
    return False
