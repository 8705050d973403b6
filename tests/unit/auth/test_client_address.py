"""Which address auth's login throttle counts: the peer, or what a trusted proxy says the client is."""

from __future__ import annotations

import pytest

from auth.service import LoginThrottle, client_address, parse_networks
from ondas.errors import Invalid

LOOPBACK = LoginThrottle().trusted_proxies


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "real_ip", "expected"),
    [
        ("203.0.113.5", None, None, "203.0.113.5"),
        ("203.0.113.5", "192.0.2.1", "192.0.2.2", "203.0.113.5"),  # not a proxy: its headers are ignored
        ("127.0.0.1", "192.0.2.1", None, "192.0.2.1"),
        ("127.0.0.1", "192.0.2.9, 192.0.2.1", None, "192.0.2.1"),  # the client's own entry is left of the proxy's
        ("127.0.0.1", "192.0.2.1, 127.0.0.1", None, "192.0.2.1"),  # trusted hops are skipped
        ("127.0.0.1", "garbage, 127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.1", None, "192.0.2.3", "192.0.2.3"),
        ("127.0.0.1", "192.0.2.1", "192.0.2.3", "192.0.2.1"),  # X-Forwarded-For wins over X-Real-IP
        ("127.0.0.1", None, "nonsense", "127.0.0.1"),
        ("::1", "2001:db8:1:2:3:4:5:6", None, "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.5", None, None, "203.0.113.5"),
        (None, "192.0.2.1", None, "unknown"),
    ],
)
def test_client_address(peer, forwarded_for, real_ip, expected):
    assert client_address(peer, forwarded_for, real_ip, LOOPBACK) == expected


def test_trusted_proxies_setting():
    assert parse_networks("none") == ()
    assert client_address("127.0.0.1", "192.0.2.1", None, ()) == "127.0.0.1"
    nets = parse_networks("10.0.0.0/8, 127.0.0.1")
    assert client_address("10.1.2.3", "192.0.2.1", None, nets) == "192.0.2.1"
    with pytest.raises(Invalid):
        parse_networks("not-a-network")
