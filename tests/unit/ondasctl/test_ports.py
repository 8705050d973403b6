import socket

import pytest

from ondasctl.ports import PortError, choose, free_port

pytestmark = pytest.mark.unit  # binds loopback sockets only; no servers


@pytest.fixture
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def test_an_explicit_port_that_is_taken_names_the_setting(busy_port):
    with pytest.raises(PortError, match="ONDAS_MQTT_PORT"):
        choose("mqtt", "ONDAS_MQTT_PORT", 1883, busy_port, set())


def test_a_taken_default_moves_to_the_next_free_port_and_says_so(busy_port):
    choice = choose("mqtt", "ONDAS_MQTT_PORT", busy_port, None, set())
    assert choice.port > busy_port
    assert choice.note and str(busy_port) in choice.note and "ONDAS_MQTT_PORT" in choice.note


def test_ports_chosen_for_other_components_are_skipped():
    port = free_port()
    choice = choose("redis", "ONDAS_REDIS_PORT", port, None, {port})
    assert choice.port != port


def test_a_free_default_is_kept_silently():
    port = free_port()
    choice = choose("redis", "ONDAS_REDIS_PORT", port, None, set())
    assert (choice.port, choice.note) == (port, None)
