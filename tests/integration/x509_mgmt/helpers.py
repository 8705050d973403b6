"""Helpers of the x509_mgmt integration tests: settings, a device manager's internal route as a real HTTP
server, a Kafka reader."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError

from ondas import kafka
from ondas.settings import CommonSettings
from x509_mgmt.settings import Settings

_ROUTE = re.compile(r"^/internal/tenants/([^/]+)/devices/([^/?]+)$")


class DeviceRoute:
    """A real HTTP server answering the device manager's ``GET /internal/tenants/<tenant>/devices/<id>`` (our own
    component's contract, device_manager/api.py) from ``devices``: {tenant: {device ids}}. Records the
    Authorization headers it was sent."""

    def __init__(self) -> None:
        self.devices: dict[str, set[str]] = {}
        self.authorizations: list[str | None] = []
        route = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route.authorizations.append(self.headers.get("Authorization"))
                m = _ROUTE.match(self.path)
                if m and m.group(2) in route.devices.get(m.group(1), set()):
                    status, body = 200, {"id": m.group(2), "label": "device", "attrs": {}, "templates": []}
                else:
                    status, body = 404, {"error": "not_found", "message": f"No such device: {self.path}"}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, tenant: str, *device_ids: str) -> None:
        self.devices.setdefault(tenant, set()).update(device_ids)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def make_settings(
    db_url: str, bootstrap: str, public_key_file: str, data_dir: Path, device_manager_url: str, relay: bool = False
) -> Settings:
    return Settings(
        common=CommonSettings(
            kafka_bootstrap=bootstrap,
            auth_url="http://127.0.0.1:1",
            jwt_public_key_file=public_key_file,
            log_level="INFO",
            bind_host="127.0.0.1",
            authz="signature",  # test tokens, no auth
        ),
        db_url=db_url,
        http_port=0,
        http_workers=1,
        worker_health_port=0,
        db_max_connections=4,
        data_dir=str(data_dir / "ca"),
        root_key_dir=str(data_dir / "root"),
        key_passphrase="",
        device_manager_url=device_manager_url,
        check_device=True,
        device_manager_timeout_seconds=5.0,
        certificate_days=365,
        crl_valid_hours=168.0,
        page_limit=25,
        page_max_limit=250,
        external_min_validity_days=1,
        ca_min_validity_days=1,
        trusted_ca_limit=-1,
        relay=relay,
        relay_poll_seconds=0.2,
    )


def consume_until(
    bootstrap: str, topic: str, n: int, timeout: float = 30.0
) -> list[tuple[str, dict[str, Any], dict[str, bytes]]]:
    """Read ``topic`` from the beginning until ``n`` messages arrived: (key, JSON value, headers)."""
    consumer = Consumer(kafka.consumer_config(bootstrap, f"test-{uuid.uuid4().hex}"))
    out: list[tuple[str, dict[str, Any], dict[str, bytes]]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART), err.str()
                continue
            key = msg.key()
            headers = {k: v for k, v in (msg.headers() or []) if isinstance(v, bytes)}
            out.append((key.decode() if key else "", json.loads(msg.value() or b"null"), headers))
    finally:
        consumer.close()
    assert len(out) >= n, f"expected {n} messages on {topic}, got {len(out)}: {out}"
    return out
