from __future__ import annotations

import time
import uuid
from typing import Any

from flask import Flask
from werkzeug.test import TestResponse

from auth.settings import Settings
from ondas.service_identity import derive_service_key, service_authorization
from tests.waiting import poll  # noqa: F401  (re-exported for the tests)

ADMIN_PASSWORD = "management-pass-1"
MASTER_SECRET = "integration-master-secret"


class AuthClient:
    """auth's real app behind the Flask test client, with a few shortcuts."""

    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.client = app.test_client()

    def call(self, method: str, path: str, token: str | None = None, json: Any = None, **kw: Any) -> TestResponse:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.open(path, method=method, json=json, headers=headers, **kw)

    def login(self, username: str, passwd: str, service: str | None = None) -> str:
        body = {"username": username, "passwd": passwd}
        if service is not None:
            body["service"] = service
        r = self.call("POST", "/", json=body)
        assert r.status_code == 200, r.get_json()
        return str(r.get_json()["jwt"])

    def admin_token(self) -> str:
        return self.login("admin", ADMIN_PASSWORD, "admin")

    def service_headers(self, name: str = "device-manager") -> dict[str, str]:
        return {"Authorization": service_authorization(name, derive_service_key(MASTER_SECRET, name))}

    def new_tenant(self, admin_password: str = "tenant-admin-pass") -> tuple[str, str]:
        """A fresh tenant with admin user ``<tenant>-admin``; (tenant, that admin's token)."""
        tenant = "t" + uuid.uuid4().hex[:10]
        r = self.call(
            "POST",
            "/tenants",
            self.admin_token(),
            json={"tenant": tenant, "admin": {"username": f"{tenant}-admin", "passwd": admin_password}},
        )
        assert r.status_code == 201, r.get_json()
        return tenant, self.login(f"{tenant}-admin", admin_password, tenant)

    def new_user(self, tenant_admin: str, username: str, passwd: str = "user-pass-123", **fields: Any) -> str:
        r = self.call("POST", "/user", tenant_admin, json={"username": username, "passwd": passwd, **fields})
        assert r.status_code == 200, r.get_json()
        return str(r.get_json()[0]["user"]["id"])

    def decision(self, token: str, method: str, path: str) -> str:
        r = self.call("POST", "/pdp", json={"jwt": token, "action": method, "resource": path})
        assert r.status_code == 200, r.get_json()
        return str(r.get_json()["decision"])

    def gateway(self, token: str | None, method: str, uri: str) -> TestResponse:
        headers = {"X-Original-Method": method, "X-Original-URI": uri}
        return self.call("GET", "/pdp/gateway", token, headers=headers)


class TenancyEvents:
    """A real consumer of ``dojot-management.dojot.tenancy`` (own group, from the earliest offset)."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Consumer

        from ondas.kafka import consumer_config, ensure_topics
        from ondas.topics import TENANCY_TOPIC

        ensure_topics(bootstrap, [TENANCY_TOPIC])
        self._consumer = Consumer(consumer_config(bootstrap, f"auth-test-{uuid.uuid4().hex[:8]}"))
        self._consumer.subscribe([TENANCY_TOPIC])
        self.seen: list[tuple[str | None, dict[str, Any]]] = []

    def wait_for(self, event: dict[str, Any], timeout: float = 30.0) -> str | None:
        """Consume until ``event`` arrives; its key."""
        import json

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for key, value in self.seen:
                if value == event:
                    return key
            msg = self._consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                key = msg.key().decode() if msg.key() else None
                self.seen.append((key, json.loads(msg.value())))
        raise AssertionError(f"event {event} not consumed within {timeout}s; saw {self.seen[-10:]}")

    def close(self) -> None:
        self._consumer.close()
