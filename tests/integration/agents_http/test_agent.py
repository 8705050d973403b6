"""The HTTP agent end to end: real gunicorn process, real Kafka-protocol broker, real Redis."""

from __future__ import annotations

import uuid

import pytest
import requests

from agents.core.credentials_redis import RedisCredentialStore as CredentialStore
from ondas.contracts import DeviceData, DeviceEvent, DeviceLiveness, TenancyEvent
from ondas.topics import TENANCY_TOPIC, device_events
from tests.integration.agents_http.conftest import LIVENESS_TIMEOUT_S, MANY, URL, HttpAgent, TopicReader, basic
from tests.integration.agents_mqtt.conftest import device, wait_until

pytestmark = pytest.mark.integration

DROPPED = "http_agent_messages_dropped_total"


def marker() -> str:
    return uuid.uuid4().hex


def creds(passwords, tenant: str, device_id: str) -> tuple[str, str, str]:
    return tenant, device_id, passwords[(tenant, device_id)]


def published(reader: TopicReader, mark: str) -> list[dict]:
    return [m for m in reader.poll() if m["value"]["attrs"].get("mark") == mark]


def assert_nothing_published(agent: HttpAgent, reader: TopicReader, auth, mark: str) -> None:
    """Nothing with ``mark`` reached Kafka: a sentinel posted after it arrives, and the mark never does."""
    sentinel = marker()
    assert agent.post(URL, {"data": {"mark": sentinel}}, auth=auth).status_code == 204
    reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == sentinel)
    assert published(reader, mark) == []


def test_an_accepted_message_lands_on_device_data(agent, reader, passwords, tenant):
    mark = marker()
    r = agent.post(URL, {"ts": "2021-06-16T09:32:01.683000Z", "data": {"temperature": 25.79, "mark": mark}},
                   auth=creds(passwords, tenant, "typed"))  # fmt: skip
    assert r.status_code == 204, r.text
    assert r.content == b""
    m = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert m["topic"] == f"{tenant}.device-data"
    assert m["key"] == "typed"
    assert m["headers"] == {"content-type": "application/json", "ondas-tenant": tenant, "ondas-device": "typed"}
    data = DeviceData.parse(m["value"])
    assert data.metadata.model_dump() == {"deviceid": "typed", "tenant": tenant, "timestamp": 1623835921683}
    assert m["value"] == {
        "metadata": {"deviceid": "typed", "tenant": tenant, "timestamp": 1623835921683},
        "attrs": {"temperature": 25.79, "mark": mark},
    }
    assert agent.metric("http_agent_attrs_unknown_total", tenant=tenant) >= 1  # "mark" is no attribute of it


def test_without_ts_the_agent_time_is_used(agent, reader, passwords, tenant):
    mark = marker()
    assert agent.post(URL, {"data": {"mark": mark}}, auth=creds(passwords, tenant, "dev1")).status_code == 204
    m = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)
    assert m["value"]["metadata"]["timestamp"] > 1_600_000_000_000


def test_create_many_keeps_the_array_order(agent, reader, passwords, tenant):
    mark = marker()
    items = [{"data": {"mark": mark, "seq": i}} for i in range(40)]
    r = agent.post(MANY, items, auth=creds(passwords, tenant, "dev2"))
    assert r.status_code == 204, r.text
    wait_until(lambda: len(published(reader, mark)) == 40, 20, "40 messages")
    got = published(reader, mark)
    assert [m["value"]["attrs"]["seq"] for m in got] == list(range(40))
    stamps = [m["value"]["metadata"]["timestamp"] for m in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == 40
    assert {m["key"] for m in got} == {"dev2"}


def test_create_many_with_some_invalid_items_publishes_the_valid_ones(agent, reader, passwords, tenant):
    mark = marker()
    items = [
        {"data": {"mark": mark, "temperature": 1.5}},
        {"data": {"mark": mark, "temperature": "hot"}},
        {"ts": "not a time", "data": {"mark": mark}},
        {"data": {"mark": mark, "temperature": 2.5}},
    ]
    before = agent.metric(DROPPED, tenant=tenant, reason="wrong_type")
    r = agent.post(MANY, items, auth=creds(passwords, tenant, "typed"))
    assert r.status_code == 207, r.text
    body = r.json()
    assert (body["accepted"], body["refused"]) == (2, 2)
    assert [(x["index"], x["status"], x.get("error")) for x in body["results"]] == [
        (0, 204, None),
        (1, 422, "wrong_type"),
        (2, 400, "bad_timestamp"),
        (3, 204, None),
    ]
    wait_until(lambda: len(published(reader, mark)) == 2, 20, "the two valid messages")
    assert [m["value"]["attrs"]["temperature"] for m in published(reader, mark)] == [1.5, 2.5]
    assert agent.metric(DROPPED, tenant=tenant, reason="wrong_type") == before + 1


BIG = b'{"data": {"blob": "' + b"x" * (1 << 20) + b'"}}'


@pytest.mark.parametrize(
    ("path", "raw", "status", "reason"),
    [
        (URL, b"this is not json", 400, "not_json"),
        (URL, b'[{"data": {"mark": "%s"}}]', 400, "not_object"),
        (URL, b'{"ts": 1623835921683, "mark": "%s"}', 400, "unknown_field"),
        (URL, b'{"ts": 1623835921683}', 400, "missing_data"),
        (URL, b'{"data": "%s"}', 400, "data_not_object"),
        (URL, b'{"data": {"mark": "%s", "temperature": "hot"}}', 422, "wrong_type"),
        (URL, b'{"data": {"mark": "%s", "n": ' + b"[" * 40 + b"]" * 40 + b"}}", 400, "too_deep"),
        (URL, b'{"data": {"mark": "%s", "n": ' + b"[" * 100000 + b"]" * 100000 + b"}}", 400, "too_deep"),
        (URL, BIG, 413, "too_large"),
        (MANY, b'{"data": {"mark": "%s"}}', 400, "not_array"),
        (MANY, b"[]", 400, "empty_batch"),
    ],
    ids=[
        "not-json",
        "array-for-one",
        "unknown-field",
        "missing-data",
        "data-string",
        "wrong-type",
        "deep",
        "very-deep",
        "one-megabyte",
        "object-for-many",
        "empty-array",
    ],
)
def test_bad_input_gets_a_clear_4xx_counted_and_nothing_published(
    agent, reader, passwords, tenant, path, raw, status, reason
):
    mark = marker()
    auth = creds(passwords, tenant, "typed")
    body = raw.replace(b"%s", mark.encode()) if b"%s" in raw[:200] else raw
    before = agent.metric(DROPPED, tenant=tenant, reason=reason)
    r = agent.post(path, raw=body, auth=auth)
    assert r.status_code == status, r.text
    assert r.json()["error"] == reason and r.json()["detail"], r.text
    assert set(r.json()) == {"error", "detail"}
    assert agent.metric(DROPPED, tenant=tenant, reason=reason) == before + 1
    assert_nothing_published(agent, reader, auth, mark)
    assert agent.ready()
    assert reason in agent.log_path.read_text()


def test_a_chunked_body_over_the_limit_is_413(agent, passwords, tenant):
    def chunks():
        for _ in range(64):
            yield b"x" * 16384

    r = requests.post(
        agent.base + URL,
        data=chunks(),
        headers={"Authorization": basic(*creds(passwords, tenant, "dev1")), "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "too_large"


def test_a_chunked_body_within_the_limit_is_read(agent, reader, passwords, tenant):
    mark = marker()
    body = f'{{"data": {{"mark": "{mark}"}}}}'.encode()
    r = requests.post(
        agent.base + URL,
        data=iter([body[:5], body[5:]]),
        headers={"Authorization": basic(*creds(passwords, tenant, "dev1")), "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 204, r.text
    reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == mark)


@pytest.mark.parametrize(
    ("who", "reason"),
    [
        ("no-header", "no_credentials"),
        ("wrong-password", "bad_credentials"),
        ("unknown-device", "bad_credentials"),
        ("not-an-identity", "bad_identity"),
        ("bearer-token", "no_credentials"),
    ],
)
def test_bad_credentials_get_401_and_nothing_published(agent, reader, passwords, tenant, who, reason):
    mark = marker()
    headers = {
        "no-header": {},
        "wrong-password": {"Authorization": basic(tenant, "dev1", "not-the-password")},
        "unknown-device": {"Authorization": basic(tenant, "nosuchdevice", "whatever")},
        "not-an-identity": {"Authorization": "Basic " + "ZGV2MTpwdw=="},  # "dev1:pw"
        "bearer-token": {"Authorization": "Bearer a.b.c"},
    }[who]
    before = agent.metric(DROPPED, reason=reason)
    r = requests.post(agent.base + URL, json={"data": {"mark": mark}}, headers=headers, timeout=30)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert r.json()["error"] == reason
    assert agent.metric(DROPPED, reason=reason) == before + 1
    assert_nothing_published(agent, reader, creds(passwords, tenant, "dev1"), mark)


def test_a_device_cannot_post_as_a_device_of_another_tenant(agent, reader, passwords, tenant, tenant_b):
    mark = marker()
    # Tenant B has a device of the same id: tenant A's password is not its password.
    for target in ((tenant_b, "dev1"), (tenant_b, "devb")):
        r = agent.post(URL, {"data": {"mark": mark}}, auth=(*target, passwords[(tenant, "dev1")]))
        assert r.status_code == 401, r.text
    # Nor does naming the other tenant with the device's own identity work.
    r = agent.post(URL, {"data": {"mark": mark}}, auth=(tenant_b, "typed", passwords[(tenant, "typed")]))
    assert r.status_code == 401
    assert_nothing_published(agent, reader, creds(passwords, tenant, "dev1"), mark)
    # Each device's own credentials still work, on its own tenant's topic.
    ok = marker()
    assert agent.post(URL, {"data": {"mark": ok}}, auth=creds(passwords, tenant_b, "dev1")).status_code == 204
    m = reader.wait_for(lambda m: m["value"]["attrs"].get("mark") == ok)
    assert m["topic"] == f"{tenant_b}.device-data" and m["value"]["metadata"]["tenant"] == tenant_b


def test_a_device_with_credentials_but_unknown_to_the_device_manager_is_404(agent, reader, store, passwords, tenant):
    store.set_password(tenant, "ghost", "ghost-password")
    mark = marker()
    r = agent.post(URL, {"data": {"mark": mark}}, auth=(tenant, "ghost", "ghost-password"))
    assert (r.status_code, r.json()["error"]) == (404, "unknown_device")
    assert_nothing_published(agent, reader, creds(passwords, tenant, "dev1"), mark)


def test_liveness_online_then_offline_after_the_timeout(agent, liveness_reader, passwords, tenant):
    auth = creds(passwords, tenant, "live1")

    def events() -> list[DeviceLiveness]:
        return [DeviceLiveness.parse(m["value"]) for m in liveness_reader.poll() if m["key"] == "live1"]

    assert agent.post(URL, {"data": {"n": 1}}, auth=auth).status_code == 204
    # A second message within the timeout does not announce the device again.
    assert agent.post(URL, {"data": {"n": 2}}, auth=auth).status_code == 204
    wait_until(lambda: [e.event for e in events()] == ["online", "offline"], 10 * LIVENESS_TIMEOUT_S, "offline")
    online, offline = events()
    assert (online.reason, online.protocol, online.metadata.tenant) == ("message", "http", tenant)
    assert (offline.reason, offline.protocol) == ("timeout", "http")
    assert offline.metadata.timestamp - online.metadata.timestamp >= LIVENESS_TIMEOUT_S * 1000
    m = next(m for m in liveness_reader.messages if m["key"] == "live1")
    assert m["headers"]["ondas-device"] == "live1" and m["topic"] == f"{tenant}.device-liveness"
    # Back again: online once more.
    assert agent.post(URL, {"data": {"n": 3}}, auth=auth).status_code == 204
    wait_until(lambda: [e.event for e in events()][:3] == ["online", "offline", "online"], 10, "online again")
    assert agent.metric("http_agent_liveness_events_total", tenant=tenant, event="offline", reason="timeout") >= 1


def test_new_credentials_replace_the_old_at_once(agent, store, tenant):
    store.set_password(tenant, "rotate1", "first-password")
    assert agent.post(URL, {"data": {}}, auth=(tenant, "rotate1", "first-password")).status_code == 204
    store.set_password(tenant, "rotate1", "second-password")  # announced: the agent's cached verdict goes
    # The announcement reaches the agent's listener thread a moment later; the verdict cache lives 300 s here,
    # so only the announcement can explain a 401 within the wait.
    old = (tenant, "rotate1", "first-password")
    wait_until(lambda: agent.post(URL, {"data": {}}, auth=old).status_code == 401, 10, "the old password refused")
    assert agent.post(URL, {"data": {}}, auth=(tenant, "rotate1", "second-password")).status_code == 204


def test_a_device_disabled_in_the_device_manager_is_refused_until_enabled(
    agent, reader, passwords, tenant, kafka_bootstrap
):
    from confluent_kafka import Producer

    auth = creds(passwords, tenant, "dev2")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})

    def announce(disabled: bool) -> None:
        event = DeviceEvent.updated(tenant, {**device("dev2"), "disabled": disabled})
        producer.produce(device_events(tenant), event.to_bytes(), key="dev2")
        assert producer.flush(10) == 0

    announce(True)
    wait_until(lambda: agent.post(URL, {"data": {}}, auth=auth).status_code == 403, 20, "dev2 refused")
    r = agent.post(URL, {"data": {"run": "while-disabled"}}, auth=auth)
    assert r.json()["error"] == "device_disabled"
    announce(False)
    wait_until(lambda: agent.post(URL, {"data": {"run": "enabled"}}, auth=auth).status_code == 204, 20, "dev2 back")
    reader.wait_for(lambda m: m["value"]["attrs"].get("run") == "enabled")
    assert not [m for m in reader.poll() if m["value"]["attrs"].get("run") == "while-disabled"]


def test_a_disabled_tenant_is_refused_with_403(agent, passwords, tenant_b, kafka_bootstrap, stub):
    from confluent_kafka import Producer

    auth = creds(passwords, tenant_b, "devb")
    assert agent.post(URL, {"data": {}}, auth=auth).status_code == 204
    stub.tenants = [t for t in stub.tenants if t != tenant_b]
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(TENANCY_TOPIC, TenancyEvent(type="DELETE", tenant=tenant_b).to_bytes(), key=tenant_b)
    assert producer.flush(10) == 0
    wait_until(lambda: agent.post(URL, {"data": {}}, auth=auth).status_code == 403, 30, "the tenant to be disabled")
    r = agent.post(URL, {"data": {}}, auth=auth)
    assert r.json() == {"error": "tenant_disabled", "detail": f"tenant {tenant_b!r} is not served"}
    # A wrong password for that tenant still says 401: the tenant's state is not told to strangers.
    assert agent.post(URL, {"data": {}}, auth=(tenant_b, "devb", "wrong")).status_code == 401
    assert agent.metric(DROPPED, reason="tenant_disabled") >= 1


def test_statistics_per_tenant_and_device_through_the_operator_routes(agent, passwords, tenant, tenant_b):
    def stats(path: str, for_tenant: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {agent.tokens.token(for_tenant)}"}
        return requests.get(f"{agent.base}/http-agent/v1/statistics{path}", headers=headers, timeout=10)

    creds = (tenant, "typed", passwords[(tenant, "typed")])
    before = stats("/devices/typed", tenant).json()
    assert agent.post(URL, {"data": {"temperature": 1.0}}, auth=creds).status_code == 204
    assert agent.post(URL, {"data": {"temperature": "x"}}, auth=creds).status_code == 422
    after = stats("/devices/typed", tenant).json()
    assert after["received"] == before["received"] + 2
    assert after["published"] == before["published"] + 1
    assert after["dropped"].get("wrong_type", 0) == before["dropped"].get("wrong_type", 0) + 1
    assert after["last_seen"] is not None
    assert stats("", tenant).json()["tenant"] == tenant
    # another tenant sees its own counts only, and none of this tenant's devices
    assert stats("", tenant_b).json()["tenant"] == tenant_b
    assert stats("/devices/typed", tenant_b).status_code == 404
    assert stats("", tenant).status_code == 200
    assert requests.get(f"{agent.base}/http-agent/v1/statistics", timeout=10).status_code == 401


def test_the_agent_is_healthy_after_all_that(agent):
    assert agent.ready()
    assert requests.get(f"{agent.base}/health/live", timeout=5).json()["status"] == "alive"
    assert agent.proc.poll() is None


def test_credentials_survive_only_as_salted_hashes(store, redis_url, tenant, passwords):
    import redis

    client = redis.Redis.from_url(redis_url)
    stored = client.hget(f"ondas:device-credentials:{tenant}", "dev1")
    client.close()
    assert stored is not None and stored.startswith(b"scrypt$")
    assert passwords[(tenant, "dev1")].encode() not in stored
    assert isinstance(store, CredentialStore)
