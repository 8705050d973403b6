"""At-least-once across a crash: the agent's MQTT session outlives the process (stable client id, session
expiry), so what devices sent while it was down reaches Kafka once it is back, in order."""

from __future__ import annotations

import json
import signal
import uuid

import pytest

from tests.integration.agents_mqtt.conftest import launch_agent

pytestmark = pytest.mark.integration


def test_messages_sent_while_the_agent_was_down_arrive_after_restart(
    mosquitto, kafka_bootstrap, stub, devices, reader, tmp_path
):
    client_id = "test-agent-" + uuid.uuid4().hex[:8]
    log_path = tmp_path / "agent.log"
    first = launch_agent(mosquitto, kafka_bootstrap, stub, log_path, client_id)
    try:
        run = uuid.uuid4().hex
        dev = devices("dev1")
        dev.publish(json.dumps({"run": run, "seq": 0}))
        reader.wait_for(lambda m: m["value"]["attrs"] == {"run": run, "seq": 0})
    finally:
        first.stop(signal.SIGKILL)

    for seq in range(1, 6):  # queued by the broker for the agent's session
        dev.publish(json.dumps({"run": run, "seq": seq}))

    second = launch_agent(mosquitto, kafka_bootstrap, stub, log_path, client_id)
    try:
        reader.wait_for(lambda m: m["value"]["attrs"] == {"run": run, "seq": 5})
        seqs = [m["value"]["attrs"]["seq"] for m in reader.messages if m["value"]["attrs"].get("run") == run]
        assert seqs == list(range(6))
    finally:
        assert second.stop() == 0, log_path.read_text()[-5000:]
