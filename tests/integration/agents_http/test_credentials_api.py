"""One home for device credentials: the MQTT agent's credentials API (here in unsecured MQTT mode, so only the
credential store is written) issues a password that the HTTP agent accepts, and a new one replaces it at once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from ondasctl.ports import free_port
from tests.integration.agents_http.conftest import URL, HttpAgent, TopicReader
from tests.integration.agents_mqtt.conftest import launch_agent, wait_until
from tests.servers import DEVICE_CREDENTIALS_KEY, Servers

pytestmark = pytest.mark.integration


def test_the_mqtt_agents_credentials_open_the_http_agent(
    mosquitto: Servers,
    kafka_bootstrap: str,
    redis_url: str,
    stub: Any,
    tokens: Any,
    agent: HttpAgent,
    reader: TopicReader,
    tenant: str,
    tenant_b: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    api_port = free_port()
    log_path = tmp_path_factory.mktemp("mqtt-agent-api") / "agent.log"
    mqtt = launch_agent(
        mosquitto,
        kafka_bootstrap,
        stub,
        log_path,
        "test-agent-" + uuid.uuid4().hex[:8],
        extra_env={
            "MQTT_AGENT_API_PORT": str(api_port),
            "MQTT_AGENT_REDIS_URL": redis_url,
            "MQTT_AGENT_CREDENTIALS_KEY": DEVICE_CREDENTIALS_KEY,
            "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
            "MQTT_AGENT_LIVENESS": "off",
        },
    )
    api = f"http://127.0.0.1:{api_port}/basic-auth/v1/devices"
    try:
        r = requests.post(f"{api}/dev2/basic-credentials", headers=tokens.headers(tenant), timeout=20)
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["username"] == f"{tenant}:dev2"

        mark = uuid.uuid4().hex
        r = requests.post(
            agent.base + URL, json={"data": {"mark": mark}}, auth=(first["username"], first["password"]), timeout=20
        )
        assert r.status_code == 204, r.text
        m = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
        assert (m["key"], m["value"]["metadata"]["tenant"]) == ("dev2", tenant)

        # New credentials: the old password stops working at once, the new one works.
        r = requests.post(f"{api}/dev2/basic-credentials", headers=tokens.headers(tenant), timeout=20)
        second = r.json()
        assert second["password"] != first["password"]
        # (the change announcement reaches the HTTP agent a moment later)
        wait_until(
            lambda: (
                requests.post(
                    agent.base + URL, json={"data": {}}, auth=(first["username"], first["password"]), timeout=20
                ).status_code
                == 401
            ),
            10,
            "the old password refused",
        )
        new = requests.post(
            agent.base + URL, json={"data": {}}, auth=(second["username"], second["password"]), timeout=20
        )
        assert new.status_code == 204, new.text

        # Another tenant's token cannot issue credentials for this tenant's device.
        r = requests.post(f"{api}/dev2/basic-credentials", headers=tokens.headers(tenant_b), timeout=20)
        assert r.status_code == 404, r.text
    finally:
        assert mqtt.stop() == 0, log_path.read_text()[-5000:]
