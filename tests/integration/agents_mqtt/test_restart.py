"""At-least-once across a crash and a restart: the agent's MQTT session outlives the process (stable client id,
session expiry), so what devices sent while it was down reaches Kafka once it is back, in order. A process
that leaves for good (MQTT_AGENT_LEAVE_ON_STOP) takes no share of the messages with it."""

from __future__ import annotations

import json
import signal
import uuid

import pytest

from tests.integration.agents_mqtt.conftest import launch_agent, wait_until

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


def test_a_graceful_restart_loses_nothing_sent_meanwhile(mosquitto, kafka_bootstrap, stub, devices, reader, tmp_path):
    client_id = "test-agent-" + uuid.uuid4().hex[:8]
    log_path = tmp_path / "agent.log"
    # The platform's default: a graceful stop keeps the session.
    first = launch_agent(mosquitto, kafka_bootstrap, stub, log_path, client_id, {"MQTT_AGENT_LEAVE_ON_STOP": "off"})
    run = uuid.uuid4().hex
    dev = devices("dev2")
    try:
        dev.publish(json.dumps({"run": run, "seq": 0}))
        reader.wait_for(lambda m: m["value"]["attrs"] == {"run": run, "seq": 0})
    finally:
        assert first.stop() == 0, log_path.read_text()[-5000:]

    for seq in range(1, 11):  # the agent is down, gracefully: the broker queues for its kept session
        dev.publish(json.dumps({"run": run, "seq": seq}))

    second = launch_agent(mosquitto, kafka_bootstrap, stub, log_path, client_id)
    try:
        reader.wait_for(lambda m: m["value"]["attrs"] == {"run": run, "seq": 10})
        seqs = [m["value"]["attrs"]["seq"] for m in reader.messages if m["value"]["attrs"].get("run") == run]
        assert seqs == list(range(11))
    finally:
        assert second.stop() == 0, log_path.read_text()[-5000:]


def test_a_process_that_leaves_takes_no_share_of_the_messages(
    mosquitto, kafka_bootstrap, stub, devices, reader, tmp_path
):
    """Two processes share the subscription; one stops with MQTT_AGENT_LEAVE_ON_STOP: every later message goes
    to the other one (a kept session would be sent every other message and hold it until it expired)."""
    log_path = tmp_path / "agent.log"
    leaving = launch_agent(mosquitto, kafka_bootstrap, stub, log_path, "test-agent-" + uuid.uuid4().hex[:8])
    staying = launch_agent(mosquitto, kafka_bootstrap, stub, log_path, "test-agent-" + uuid.uuid4().hex[:8])
    try:
        assert leaving.stop() == 0, log_path.read_text()[-5000:]
        run = uuid.uuid4().hex
        dev = devices("dev3")
        for seq in range(20):
            dev.publish(json.dumps({"run": run, "seq": seq}))

        def arrived() -> list[int]:
            reader.poll()
            seqs = [m["value"]["attrs"]["seq"] for m in reader.messages if m["value"]["attrs"].get("run") == run]
            return seqs if len(set(seqs)) == 20 else []

        assert sorted(set(wait_until(arrived, 20, "all 20 messages through the remaining process"))) == list(range(20))
    finally:
        assert staying.stop() == 0, log_path.read_text()[-5000:]
