import pytest

from ondas import topics

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("tenant", "subject", "expected"),
    [
        ("admin", topics.DEVICE_DATA, "admin.device-data"),
        ("admin", topics.DEVICE_EVENTS, "admin.dojot.device-manager.device"),
        ("t_1", "x.y", "t_1.x.y"),
    ],
    ids=["device-data", "device-events", "dotted-subject"],
)
def test_build_and_parse_round_trip(tenant, subject, expected):
    name = topics.topic(tenant, subject)
    assert name == expected
    parsed = topics.parse(name)
    assert (parsed.tenant, parsed.subject) == (tenant, subject)


def test_tenancy_topic_is_the_management_one():
    assert topics.TENANCY_TOPIC == "dojot-management.dojot.tenancy"
    assert topics.parse(topics.TENANCY_TOPIC).subject == "dojot.tenancy"


@pytest.mark.parametrize("bad", ["Admin", "a.b", "", "-x", "a" * 64, "a b"], ids=str)
def test_invalid_tenants_are_refused(bad):
    with pytest.raises(ValueError):
        topics.topic(bad, topics.DEVICE_DATA)


@pytest.mark.parametrize("bad", ["nodot", "admin.", "BAD.device-data"], ids=str)
def test_parse_refuses_names_outside_the_grammar(bad):
    with pytest.raises(ValueError):
        topics.parse(bad)


def test_dead_letter_name():
    assert topics.dead_letter("admin.device-data") == "admin.device-data.dlq"
