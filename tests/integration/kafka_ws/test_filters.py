"""Every ``fields`` form and every ``where`` operator of dojot's Kafka WS, through a real websocket client on the
real process: each connection gets exactly the messages its ``where`` keeps, shaped by its ``fields``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import websockets

from tests.integration.kafka_ws.helpers import KafkaWsProcess, nothing_more, publish_many, receive, topic_url

pytestmark = pytest.mark.integration

Msg = dict[str, Any]


def messages(tenant: str) -> list[Msg]:
    def m(seq: int, temperature: float, rain: float, status: str, enabled: bool) -> Msg:
        return {
            "metadata": {"deviceid": f"dev{seq}", "tenant": tenant},
            "attrs": {"seq": seq, "temperature": temperature, "rain": rain, "brake signal 1": seq - 2},
            "sensor": {"status": status, "rain": {"enabled": enabled}, "serial": f"SN-{seq}"},
        }

    return [m(1, 20, 10.5, "failed", True), m(2, 7, 16, "ok", False), m(3, 12, 5, "stopped", True)]


def whole(m: Msg) -> Msg:
    return m


# (fields, where, sequence numbers kept, what each kept message becomes)
CASES: list[tuple[str, str, list[int], Callable[[Msg], Any]]] = [
    ("", "", [1, 2, 3], whole),
    # fields
    ("attrs,metadata", "", [1, 2, 3], lambda m: {"attrs": m["attrs"], "metadata": m["metadata"]}),
    ("metadata/tenant", "", [1, 2, 3], lambda m: {"metadata": {"tenant": m["metadata"]["tenant"]}}),
    (
        "attrs(temperature,rain)",
        "",
        [1, 2, 3],
        lambda m: {"attrs": {"temperature": m["attrs"]["temperature"], "rain": m["attrs"]["rain"]}},
    ),
    ("attrs/*", "", [1, 2, 3], lambda m: {"attrs": m["attrs"]}),
    ("attrs/humidity", "", [1, 2, 3], lambda m: {"attrs": {}}),
    ("sensor/*/enabled", "", [1, 2, 3], lambda m: {"sensor": {"rain": {"enabled": m["sensor"]["rain"]["enabled"]}}}),
    (
        "sensor/status,attrs/seq",
        "",
        [1, 2, 3],
        lambda m: {"sensor": {"status": m["sensor"]["status"]}, "attrs": {"seq": m["attrs"]["seq"]}},
    ),
    # where: set operators (values as strings, substring match)
    ("attrs/seq", "sensor.status=in:failed,stopped;", [1, 3], lambda m: {"attrs": {"seq": m["attrs"]["seq"]}}),
    ("", "sensor.status=in:top;", [3], whole),
    ("", "sensor.status=nin:failed,stopped;", [1, 2, 3], whole),  # any of the values not contained
    ("", "sensor.status=nin:ed;", [2], whole),
    ("", "sensor.serial=in:SN-2;", [2], whole),
    # where: arithmetic operators (values as floats); eq is the default
    ("", "attrs.rain=10.5;", [1], whole),
    ("", "attrs.rain=eq:16;", [2], whole),
    ("", "attrs.rain=neq:16;", [1, 3], whole),
    ("", "attrs.temperature=gt:12;", [1], whole),
    ("", "attrs.temperature=gte:12;", [1, 3], whole),
    ("", "attrs.temperature=lt:12;", [2], whole),
    ("", "attrs.temperature=lte:12;", [2, 3], whole),
    ("", "attrs.temperature=gte:5.0;attrs.temperature=lt:10.0;", [2], whole),
    # where: boolean operator
    ("", "sensor.rain.enabled=bool:true;", [1, 3], whole),
    ("", "sensor.rain.enabled=bool:false;", [2], whole),
    # a missing parameter fails its condition
    ("", "attrs.humidity=gt:0;", [], whole),
    # where applies before fields: the condition reads a parameter that fields leaves out
    ("attrs/seq", "attrs.rain=lte:15;", [1, 3], lambda m: {"attrs": {"seq": m["attrs"]["seq"]}}),
    ("temperature,rain", "attrs.rain=lte:15;", [1, 3], lambda m: {}),
]


async def _run(kws: KafkaWsProcess, tokens: Any, tenant: str, bootstrap: str) -> None:
    topic = f"{tenant}.device-data"
    before = kws.connections(tenant)
    sockets = []
    for fields, where, _, _ in CASES:
        params = {k: v for k, v in (("fields", fields), ("where", where)) if v}
        sockets.append(await websockets.connect(topic_url(kws, topic, kws.ticket(tokens.token(tenant)), **params)))
    # The URL form of the reference: '+' for spaces in a parameter name.
    raw = f"{kws.ws_base}/kafka-ws/v1/topics/{topic}?ticket={kws.ticket(tokens.token(tenant))}"
    sockets.append(
        await websockets.connect(raw + "&where=attrs.+brake+signal+1+=gte:0.0;&fields=attrs/+brake+signal+1+")
    )
    try:
        await asyncio.to_thread(kws.wait_connections, tenant, before + len(sockets))
        msgs = messages(tenant)
        await asyncio.to_thread(publish_many, bootstrap, topic, msgs)
        for ws, (fields, where, kept, shape) in zip(sockets, CASES, strict=False):
            expected = [shape(msgs[seq - 1]) for seq in kept]
            got = await receive(ws, len(expected))
            assert got == expected, (fields, where)
        quiet = await asyncio.gather(*(nothing_more(ws, 0.5) for ws in sockets[:-1]))
        assert all(quiet), [case[:2] for case, q in zip(CASES, quiet, strict=True) if not q]
        spaced = await receive(sockets[-1], 2)
        assert spaced == [{"attrs": {"brake signal 1": 0}}, {"attrs": {"brake signal 1": 1}}]
    finally:
        for ws in sockets:
            await ws.close()


def test_every_filter_form_and_operator(kws: KafkaWsProcess, tokens: Any, tenants: Any, kafka_bootstrap: str) -> None:
    asyncio.run(_run(kws, tokens, tenants[0], kafka_bootstrap))
