"""The agent's HTTP answers and counters through Flask's test client, with fakes of our own ports (credential
store, producer); the real servers are in tests/integration/agents_http."""

import base64
import json
import threading
from concurrent.futures import Future

import pytest

from agents.core.cache import DeviceCache
from agents.core.stats import Statistics
from agents.http.app import build_app
from agents.http.metrics import DROPPED, PUBLISHED, UNKNOWN_ATTRS
from agents.http.service import Ingest
from ondas.errors import Unavailable
from ondas.health import Health

pytestmark = pytest.mark.unit

NOW = 1_700_000_000_000
URL = "/http-agent/v1/incoming-messages"
MANY = f"{URL}/create-many"


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict, str, list]] = []
        self.fail = False
        self.lock = threading.Lock()

    def send(self, topic, value, key=None, headers=None) -> Future:
        fut: Future = Future()
        if self.fail:
            fut.set_exception(Unavailable("no broker"))
            return fut
        with self.lock:
            self.sent.append((topic, json.loads(value), key, headers))
        fut.set_result(None)
        return fut


class FakeCredentials:
    def __init__(self, passwords: dict[tuple[str, str], str]) -> None:
        self.passwords = passwords
        self.down = False

    def verify(self, tenant, device_id, password) -> bool:
        if self.down:
            raise Unavailable("the credential store is not reachable")
        return self.passwords.get((tenant, device_id)) == password


def typed(device_id: str) -> dict:
    attrs = [{"label": "temperature", "value_type": "float"}, {"label": "count", "value_type": "integer"}]
    return {"id": device_id, "attrs": {"1": attrs}}


class World:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.cache = DeviceCache()
        self.cache.replace_tenant(tenant, [typed("efac"), typed("other")])
        self.cache.replace_tenant("elsewhere", [typed("efac")])
        self.producer = FakeProducer()
        self.credentials = FakeCredentials(
            {(tenant, "efac"): "pw", (tenant, "other"): "pw2", ("elsewhere", "efac"): "pw3", (tenant, "gone"): "pw4"}
        )
        self.warming = False
        self.ingest = Ingest(
            cache=self.cache,
            credentials=self.credentials,  # type: ignore[arg-type]
            producer=self.producer,  # type: ignore[arg-type]
            liveness=None,
            lookup=None,
            warming=lambda: self.warming,
            publish_timeout_s=1.0,
            clock=lambda: NOW,
        )
        self.stats = Statistics()
        app = build_app("http-agent-test", Health("t"), lambda: self.ingest, max_body_bytes=1024, max_depth=3,
                        max_batch=4, stats=self.stats, cache=self.cache, public_key=lambda: "",
                        management_tenant="admin")  # fmt: skip
        self.client = app.test_client()

    def auth(self, device: str = "efac", password: str = "pw", tenant: str | None = None) -> dict[str, str]:
        token = base64.b64encode(f"{tenant or self.tenant}:{device}:{password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def post(self, path: str = URL, body=None, raw: bytes | None = None, headers=None):
        data = raw if raw is not None else json.dumps(body).encode()
        return self.client.post(path, data=data, headers=headers if headers is not None else self.auth(),
                                content_type="application/json")  # fmt: skip

    def dropped(self, reason: str, tenant: str | None = None) -> float:
        return DROPPED.labels(tenant or self.tenant, reason)._value.get()


@pytest.fixture
def world(unique) -> World:
    return World(unique)


def test_one_message_is_published_and_answered_204(world):
    r = world.post(body={"ts": "2021-06-16T09:32:01.683Z", "data": {"temperature": 21.5, "extra": 1}})
    assert r.status_code == 204, r.text
    [(topic, value, key, headers)] = world.producer.sent
    assert (topic, key) == (f"{world.tenant}.device-data", "efac")
    assert value == {
        "metadata": {"deviceid": "efac", "tenant": world.tenant, "timestamp": 1623835921683},
        "attrs": {"temperature": 21.5, "extra": 1},
    }
    assert headers == [
        ("content-type", "application/json"),
        ("ondas-tenant", world.tenant),
        ("ondas-device", "efac"),
    ]
    assert PUBLISHED.labels(world.tenant)._value.get() == 1
    assert UNKNOWN_ATTRS.labels(world.tenant)._value.get() == 1


@pytest.mark.parametrize(
    ("path", "raw", "status", "reason"),
    [
        (URL, b"{nope", 400, "not_json"),
        (URL, b'[{"data": {}}]', 400, "not_object"),
        (URL, b'{"ts": 1}', 400, "missing_data"),
        (URL, b'{"data": {"temperature": "hot"}}', 422, "wrong_type"),
        (URL, b'{"data": {"a": {"b": {"c": {"d": 1}}}}}', 400, "too_deep"),
        (URL, b'{"data": {}, "ts": "yesterday"}', 400, "bad_timestamp"),
        (URL, b'{"data": {"x": "' + b"a" * 2000 + b'"}}', 413, "too_large"),
        (MANY, b'{"data": {}}', 400, "not_array"),
        (MANY, b"[]", 400, "empty_batch"),
        (MANY, b'[{"data": {}}, {"data": {}}, {"data": {}}, {"data": {}}, {"data": {}}]', 400, "too_many_items"),
    ],
    ids=lambda v: v if isinstance(v, str) and not v.startswith("/") else None,
)
def test_bad_input_gets_a_clear_4xx_and_is_counted(world, path, raw, status, reason):
    before = world.dropped(reason)
    r = world.post(path, raw=raw)
    assert r.status_code == status, r.text
    assert r.json == {"error": reason, "detail": r.json["detail"]} and r.json["detail"]
    assert world.dropped(reason) == before + 1
    assert world.producer.sent == []


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no_credentials"),
        ({"Authorization": "Bearer x.y.z"}, "no_credentials"),
        ("wrong-password", "bad_credentials"),
        ("unknown-device", "bad_credentials"),
        ("other-tenants-password", "bad_credentials"),
    ],
    ids=["missing", "bearer", "wrong-password", "unknown-device", "other-tenants-password"],
)
def test_bad_credentials_get_401_with_www_authenticate(world, headers, reason):
    if headers == "wrong-password":
        headers = world.auth(password="nope")
    elif headers == "unknown-device":
        headers = world.auth(device="nobody")
    elif headers == "other-tenants-password":
        headers = world.auth(password="pw3")  # elsewhere:efac's password, for this tenant's efac
    r = world.post(body={"data": {"temperature": 1}}, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Basic ")
    assert r.json["error"] == reason
    assert world.producer.sent == []


def test_a_disabled_tenant_gets_403_and_a_device_missing_from_the_cache_404(world):
    world.cache.drop_tenant("elsewhere")
    r = world.post(body={"data": {}}, headers=world.auth(tenant="elsewhere", password="pw3"))
    assert (r.status_code, r.json["error"]) == (403, "tenant_disabled")
    assert DROPPED.labels("_unknown", "tenant_disabled")._value.get() >= 1  # the label stays bounded
    r = world.post(body={"data": {}}, headers=world.auth(device="gone", password="pw4"))
    assert (r.status_code, r.json["error"]) == (404, "unknown_device")
    assert world.producer.sent == []


def test_a_tenant_still_warming_gets_503_not_403(world):
    world.cache.drop_tenant("elsewhere")
    world.warming = True
    r = world.post(body={"data": {}}, headers=world.auth(tenant="elsewhere", password="pw3"))
    assert (r.status_code, r.json["error"]) == (503, "unavailable")


def test_redis_or_kafka_away_is_503_never_500(world):
    world.credentials.down = True
    assert world.post(body={"data": {}}).status_code == 503
    world.credentials.down = False
    world.producer.fail = True
    r = world.post(body={"data": {}})
    assert (r.status_code, r.json["error"]) == (503, "unavailable")


def test_create_many_publishes_in_order_and_reports_each_refused_item(world):
    r = world.post(MANY, [{"data": {"count": 1}}, {"data": {"count": "two"}}, {"dat": {}}, {"data": {"count": 3}}])
    assert r.status_code == 207, r.text
    assert r.json["accepted"] == 2 and r.json["refused"] == 2
    assert [(x["index"], x["status"], x.get("error")) for x in r.json["results"]] == [
        (0, 204, None),
        (1, 422, "wrong_type"),
        (2, 400, "unknown_field"),
        (3, 204, None),
    ]
    assert [v["attrs"]["count"] for _, v, _, _ in world.producer.sent] == [1, 3]
    stamps = [v["metadata"]["timestamp"] for _, v, _, _ in world.producer.sent]
    assert stamps == sorted(stamps) and len(set(stamps)) == 2, "reception time strictly increases per device"


def test_create_many_with_every_item_valid_is_204_and_with_none_valid_is_4xx(world):
    assert world.post(MANY, [{"data": {"count": i}} for i in range(4)]).status_code == 204
    r = world.post(MANY, [{"data": {"count": "x"}}, {"data": {"temperature": "y"}}])
    assert r.status_code == 422 and r.json["error"] == "no_valid_message" and r.json["accepted"] == 0
    r = world.post(MANY, [{"data": {"count": "x"}}, "junk"])
    assert r.status_code == 400 and r.json["refused"] == 2


def test_per_device_order_holds_under_concurrent_requests(world):
    def post_many(start: int) -> None:
        for i in range(start, start + 20):
            assert world.post(body={"data": {"count": i}}).status_code == 204

    threads = [threading.Thread(target=post_many, args=(k * 100,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps = [v["metadata"]["timestamp"] for _, v, _, _ in world.producer.sent]
    assert len(stamps) == 80 and stamps == sorted(stamps) and len(set(stamps)) == 80
    counts = [v["attrs"]["count"] for _, v, _, _ in world.producer.sent]
    for k in range(4):  # each client's own sequence keeps its order
        assert [c for c in counts if k * 100 <= c < k * 100 + 100] == list(range(k * 100, k * 100 + 20))


def test_unknown_routes_and_methods_answer_in_the_agents_error_shape(world):
    r = world.client.get(URL)
    assert r.status_code == 405 and r.json["error"] == "method_not_allowed" and "detail" in r.json
    r = world.client.post("/http-agent/v1/nothing-here")
    assert r.status_code == 404 and r.json["error"] == "not_found"


def test_statistics_count_per_device_and_tenant(world):
    assert world.post(body={"data": {"temperature": 1.5}}).status_code == 204
    assert world.post(body={"data": {"temperature": "hot"}}).status_code == 422
    many = [{"data": {"temperature": 2.5}}, {"data": {"temperature": "cold"}}]
    assert world.post(MANY, body=many).status_code == 207
    assert world.post(body={"data": {}}, headers=world.auth(password="wrong")).status_code == 401
    efac = world.stats.device(world.tenant, "efac")
    assert (efac["received"], efac["published"]) == (4, 2)
    assert efac["dropped"] == {"wrong_type": 2}
    tenant = world.stats.tenant(world.tenant)
    # a request that did not authenticate is the tenant's, never a device's
    assert tenant["dropped"] == {"bad_credentials": 1, "wrong_type": 2}
    assert tenant["dropped_unknown_device"] == {"bad_credentials": 1}
    assert world.stats.tenant("elsewhere")["received"] == 0


def test_a_disabled_device_is_refused_with_403_until_enabled(world):
    world.cache.replace_tenant(world.tenant, [{**typed("efac"), "disabled": True}, typed("other")])
    r = world.post(body={"data": {"temperature": 1.0}})
    assert (r.status_code, r.json["error"]) == (403, "device_disabled")
    assert world.producer.sent == []
    world.cache.replace_tenant(world.tenant, [{**typed("efac"), "disabled": False}, typed("other")])
    assert world.post(body={"data": {"temperature": 1.0}}).status_code == 204
