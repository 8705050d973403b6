"""The agent's MQTT connection (gmqtt, MQTT v5) to the broker's internal listener.

- Inbound: a shared subscription ``$share/<group>/+/attrs`` at QoS 1 with ``optimistic_acknowledgement=False``:
  gmqtt sends the PUBACK only when the ``on_message`` coroutine returns, so a device's message is acknowledged
  only after it was handled. The group is one per device shard (:func:`attrs_subscription`): a shared
  subscription, unlike a plain one, is not sent the retained messages again at each subscribe.
- The liveness connection (a second instance, its own client id) subscribes instead to the broker's log
  ``$SYS/broker/log/N``, not shared: every line must reach the one process that tracks connections.
- Outbound: :meth:`MqttConnection.publish` waits for the broker's PUBACK (gmqtt has no publish future: the
  wait is built on the in-flight store that gmqtt keeps until PUBACK).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gmqtt import Client, Subscription
from gmqtt.storage import PersistentStorage

from ondas.errors import Unavailable

log = logging.getLogger("agents.mqtt.broker")

SHARE_GROUP = "ondas-mqtt-agent"


def attrs_subscription(shard_index: int, shard_count: int, legacy: bool = False) -> str:
    """Every device's attrs, for the bridge processes of one shard. Each shard's group is sent every message
    (the bridge forwards its own devices' and acknowledges the others'); processes given the same shard share
    its messages in turn, which keeps no order between them (bridge.py). ``legacy``: the Mosca-era topics
    ``/<tenant>/<device-id>/attrs`` instead, in the same group."""
    group = SHARE_GROUP if shard_count == 1 else f"{SHARE_GROUP}-{shard_index}-of-{shard_count}"
    return f"$share/{group}/+/+/+/attrs" if legacy else f"$share/{group}/+/attrs"


MessageHandler = Callable[[str, bytes], Awaitable[int]]

# How many of the agent's own publishes may await their PUBACK at once: below Mosquitto's receive maximum for a
# client (20, announced in CONNACK; gmqtt raises OverflowError instead of waiting when it is used up).
PUBLISH_WINDOW = 16


async def connect_with_retry(client: Client, host: str, port: int, timeout: float) -> None:
    """Connect ``client``, retrying every 0.5 s while the broker is not reachable (it may still be starting)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await client.connect(host, port, keepalive=30)
            return
        except Exception as exc:  # OSError, or gmqtt's own refusal errors
            if loop.time() > deadline:
                raise Unavailable(f"MQTT broker {host}:{port} not reachable: {exc}") from exc
            log.warning("MQTT broker not reachable, retrying", extra={"error": f"{type(exc).__name__}: {exc}"})
            await asyncio.sleep(0.5)


class AckTrackingStorage(PersistentStorage):  # type: ignore[misc]
    """gmqtt's in-flight store of outbound QoS 1 messages, with one future per packet id that resolves on
    PUBACK and fails when the broker did not keep the session (the message may not have been delivered)."""

    def __init__(self) -> None:
        super().__init__()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self.last_mid: int | None = None

    def push_message(self, mid: int, raw_package: bytes) -> None:
        super().push_message(mid, raw_package)
        if mid not in self._acks:
            self._acks[mid] = asyncio.get_running_loop().create_future()
        self.last_mid = mid

    def remove_message_by_mid(self, mid: int) -> None:
        super().remove_message_by_mid(mid)
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def clear(self) -> None:
        super().clear()
        acks, self._acks = self._acks, {}
        for fut in acks.values():
            if not fut.done():
                fut.set_exception(Unavailable("the broker dropped the session before acknowledging"))

    def ack_of(self, mid: int) -> asyncio.Future[None]:
        return self._acks[mid]


class MqttConnection:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        client_id: str,
        session_expiry_s: int,
        receive_maximum: int,
        on_attrs: MessageHandler,
        subscriptions: Sequence[str],
    ) -> None:
        self._host = host
        self._port = port
        self._on_attrs = on_attrs
        self._subscriptions = list(subscriptions)
        self._store = AckTrackingStorage()
        self._client = Client(
            client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            persistent_storage=self._store,
            session_expiry_interval=session_expiry_s,
            receive_maximum=receive_maximum,
        )
        self._client.set_auth_credentials(username, password)
        self._client.reconnect_delay = 1
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._subscribed = asyncio.Event()
        self._unsubscribed = asyncio.Event()
        self._client.on_unsubscribe = lambda client, mid, granted: self._unsubscribed.set()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._stopping = False

    @property
    def connected(self) -> bool:
        return bool(self._client._connection is not None and self._client.is_connected) and self._subscribed.is_set()

    async def start(self, timeout: float = 60.0) -> None:
        """Connect (retrying while the broker is not reachable) and subscribe to every device's attrs."""
        await connect_with_retry(self._client, self._host, self._port, timeout)
        await asyncio.wait_for(self._subscribed.wait(), timeout)

    async def stop(self, leave: bool = False, timeout: float = 10.0) -> None:
        """Stop taking messages and disconnect.

        ``leave`` False: the session is kept (the broker keeps queueing for it until it expires), and a message
        received but not yet acknowledged is sent again when a process with this client id reconnects: a
        restart loses nothing. ``leave`` True: unsubscribe first (the broker assigns this session nothing new),
        finish and acknowledge what was received, then end the session."""
        if leave and self.connected:
            self._unsubscribed.clear()
            self._client.unsubscribe(self._subscriptions)
            try:
                await asyncio.wait_for(self._unsubscribed.wait(), timeout)
            except TimeoutError:
                log.warning("no UNSUBACK from the broker, leaving anyway")
        # Finishing the handlers under way spares duplicates; one that does not finish in time is no loss while
        # the session is kept (what was not acknowledged is sent again).
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
        self._stopping = True
        await self._client.disconnect(**({"session_expiry_interval": 0} if leave else {}))

    def _on_connect(self, client: Client, flags: int, rc: int, properties: dict[str, Any]) -> None:
        log.info("connected to the MQTT broker", extra={"session_present": bool(flags)})
        # Subscribing again is harmless when the session was kept, and needed when it was not.
        client.subscribe([Subscription(t, qos=1) for t in self._subscriptions])

    def _on_subscribe(self, client: Client, mid: int, granted: tuple[int, ...], properties: Any) -> None:
        if all(code < 0x80 for code in granted):
            self._subscribed.set()
            log.info("subscribed", extra={"subscriptions": self._subscriptions, "granted": list(granted)})
        else:
            log.error("subscription refused", extra={"subscriptions": self._subscriptions, "granted": list(granted)})

    def _on_disconnect(self, client: Client, packet: Any, exc: Any = None) -> None:
        self._subscribed.clear()
        if self._stopping:
            log.info("disconnected from the MQTT broker")
        else:
            log.warning("disconnected from the MQTT broker, reconnecting")

    async def _on_message(self, client: Client, topic: str, payload: bytes, qos: int, properties: Any) -> int:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            return await self._on_attrs(topic, payload)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def publish(self, topic: str, payload: bytes, timeout: float = 30.0) -> None:
        """Publish at QoS 1 and wait for the broker's PUBACK; raises Unavailable when not acknowledged."""
        if not self.connected:
            raise Unavailable("not connected to the MQTT broker")
        self._client.publish(topic, payload, qos=1)
        mid = self._store.last_mid
        if mid is None:
            raise Unavailable("the message was not stored for acknowledgement")
        try:
            await asyncio.wait_for(asyncio.shield(self._store.ack_of(mid)), timeout)
        except TimeoutError as exc:
            raise Unavailable(f"no PUBACK from the broker within {timeout} s", topic=topic) from exc

    async def publish_many(self, messages: Sequence[tuple[str, bytes]], timeout: float = 30.0) -> None:
        """Publish in this order at QoS 1, up to :data:`PUBLISH_WINDOW` awaiting their PUBACK at once, and return
        when every one was acknowledged; raises Unavailable when one was not (the others may have been)."""
        pending: set[asyncio.Task[None]] = set()
        try:
            for topic, payload in messages:
                while len(pending) >= PUBLISH_WINDOW:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                # Tasks start in creation order, so the broker is sent the messages in this order.
                pending.add(asyncio.ensure_future(self.publish(topic, payload, timeout)))
            results = await asyncio.gather(*pending, return_exceptions=True)
            pending = set()
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        finally:
            for task in pending:
                task.cancel()
