"""In-process stand-ins for the unit tests of nodes and the engine: outputs collected in a list, a context store in
a dict (the Redis one is tested in tests/integration/flowbroker), no HTTP."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from flowbroker.nodes.base import NodeError, RunContext


class ListOutputs:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any], list[tuple[str, str]]]] = []

    def send(self, topic_subject: str, key: str, value: dict[str, Any], headers: list[tuple[str, str]]) -> None:
        self.sent.append((topic_subject, key, copy.deepcopy(value), headers))


class DictContexts:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return copy.deepcopy(self.values.get(key))

    def update(self, key: str, change: Callable[[Any], tuple[Any, Any]]) -> Any:
        new, result = change(copy.deepcopy(self.values.get(key)))
        self.values[key] = new
        return result


class NoHttp:
    def request(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> Any:
        raise NodeError("no HTTP in unit tests")


def run_context(
    outputs: ListOutputs | None = None,
    contexts: DictContexts | None = None,
    http: Any = None,
    message_id: str = "t.device-data:0:1",
    device_id: str = "9face8",
) -> RunContext:
    return RunContext(
        tenant="acme",
        flow_id="flow1",
        device_id=device_id,
        message_id=message_id,
        generation=0,
        outputs=outputs or ListOutputs(),
        contexts=contexts or DictContexts(),
        http=http or NoHttp(),
        now_ms=lambda: 1_700_000_000_000,
    )
