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


def _down_and_back(setup, device_id: str, stop, first_env: dict[str, str] | None = None, queued: int = 5) -> None:
    """Start an agent, see one message through, ``stop`` it, publish ``queued`` messages while it is down, start
    it again with the same client id: every message arrives, in order."""
    mosquitto, kafka_bootstrap, stub, devices, reader, tmp_path = setup
    client_id = "test-agent-" + uuid.uuid4().hex[:8]
    log_path = tmp_path / "agent.log"
    first = launch_agent(mosquitto, kafka_bootstrap, stub, log_path, client_id, first_env)
    run = uuid.uuid4().hex
    dev = devices(device_id)
    try:
        dev.publish(json.dumps({"run": run, "seq": 0}))
        reader.wait_for(lambda m: m["value"]["attrs"] == {"run": run, "seq": 0})
    finally:
        stop(first, log_path)

    for seq in range(1, queued + 1):  # queued by the broker for the agent's kept session
        dev.publish(json.dumps({"run": run, "seq": seq}))

    second = launch_agent(mosquitto, kafka_bootstrap, stub, log_path, client_id)
    try:
        reader.wait_for(lambda m: m["value"]["attrs"] == {"run": run, "seq": queued})
        seqs = [m["value"]["attrs"]["seq"] for m in reader.messages if m["value"]["attrs"].get("run") == run]
        assert seqs == list(range(queued + 1))
    finally:
        assert second.stop() == 0, log_path.read_text()[-5000:]


def test_messages_sent_while_the_agent_was_down_arrive_after_restart(
    mosquitto, kafka_bootstrap, stub, devices, reader, tmp_path
):
    def crash(agent, log_path):
        agent.stop(signal.SIGKILL)

    _down_and_back((mosquitto, kafka_bootstrap, stub, devices, reader, tmp_path), "dev1", crash)


def test_a_graceful_restart_loses_nothing_sent_meanwhile(mosquitto, kafka_bootstrap, stub, devices, reader, tmp_path):
    def graceful(agent, log_path):
        assert agent.stop() == 0, log_path.read_text()[-5000:]

    # The platform's default: a graceful stop keeps the session.
    setup = (mosquitto, kafka_bootstrap, stub, devices, reader, tmp_path)
    _down_and_back(setup, "dev2", graceful, {"MQTT_AGENT_LEAVE_ON_STOP": "off"}, queued=10)


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
