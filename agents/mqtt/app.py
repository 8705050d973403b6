"""The one place that wires the MQTT agent together.

Start-up order: health endpoints, Kafka producer, the two device-events consumers (this process's cache feed and
the platform's shared action consumer; no topics yet), tenancy, then the
device caches are warmed (each tenant's events are consumed only once its cache is warm), then the MQTT
subscription opens: no device message is judged against a cold cache.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import requests

from agents.core.cache import DeviceCache, fetch_device, follow_devices
from agents.core.credentials import CredentialStore
from agents.core.stats import Statistics
from agents.mqtt.api import ApiServer, build_app, run_on
from agents.mqtt.bridge import AttrsBridge
from agents.mqtt.broker import MqttConnection, attrs_subscription
from agents.mqtt.commands import DeviceEventHandler
from agents.mqtt.liveness import LOG_TOPIC, LivenessBridge
from agents.mqtt.provisioning import Dynsec, DynsecError, Provisioner
from agents.mqtt.revocation import removal_handler, revoker_from_settings
from agents.mqtt.settings import Settings
from agents.mqtt.tenants import TenantRemoval
from ondas.authn import load_public_key
from ondas.errors import Unavailable
from ondas.health import Health, serve_health
from ondas.kafka import ConsumerLoop, get_producer
from ondas.tenancy import TenantPurge

log = logging.getLogger("agents.mqtt.app")

SERVICE = "mqtt-agent"
PUBLISH_TIMEOUT_S = 30.0


class MqttAgent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.health = Health(SERVICE)
        # Health is served from the start of run(), but ready only once run() registered every check below.
        self._started = self.health.hold()
        self.cache = DeviceCache()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mqtt: MqttConnection | None = None
        self._provisioner: Provisioner | None = None
        self.stats = Statistics()
        self.failed = False

    # -- Kafka -> MQTT, called on the consumer thread ----------------------------------------------------------
    def publish_sync(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish at QoS 1 in this order and wait until the broker acknowledged every one."""
        loop, mqtt = self._loop, self._mqtt
        if loop is None or mqtt is None:
            raise Unavailable("the MQTT connection is not up yet")
        fut = asyncio.run_coroutine_threadsafe(mqtt.publish_many(messages, PUBLISH_TIMEOUT_S), loop)
        try:
            fut.result(PUBLISH_TIMEOUT_S + 5)
        except concurrent.futures.TimeoutError as exc:
            fut.cancel()
            raise Unavailable("the MQTT publishes did not complete in time", count=len(messages)) from exc

    def remove_sync(self, username: str) -> None:
        """End a removed device's sessions on every listener and delete its credentials (consumer thread)."""
        self._provision(lambda p: p.remove(username))

    def disable_sync(self, username: str, disabled: bool) -> None:
        """End a disabled device's sessions and refuse its password logins, or let it log in again."""
        if not disabled and not self.settings.dynsec_passwords:
            return  # no device passwords in the broker (unsecured mode): nothing to let in again
        self._provision(lambda p: p.disable(username) if disabled else p.enable(username))

    def _provision(self, action: Callable[[Provisioner], Coroutine[Any, Any, None]]) -> None:
        """Run a dynamic security action on the agent's loop from the consumer thread and wait for it."""
        loop, provisioner = self._loop, self._provisioner
        if loop is None or provisioner is None or not provisioner.ready:
            raise Unavailable("the dynamic security plugin is not reachable yet")
        fut = asyncio.run_coroutine_threadsafe(action(provisioner), loop)
        try:
            fut.result(PUBLISH_TIMEOUT_S)
        except concurrent.futures.TimeoutError as exc:
            fut.cancel()
            raise Unavailable("the dynamic security plugin did not answer in time") from exc
        except DynsecError as exc:
            raise Unavailable(f"the dynamic security plugin refused: {exc}") from exc

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        server = serve_health(self.health, s.common.bind_host, s.health_port)
        producer = get_producer(s.common.kafka_bootstrap)
        # Every process feeds its own device cache from every device event (a consumer group of its own) ...
        feed = ConsumerLoop(
            name=f"{SERVICE}-cache",
            bootstrap=s.common.kafka_bootstrap,
            group_id=f"{s.consumer_group}.cache.{s.client_id}",
            topics=[],
            handler=DeviceEventHandler(self.cache, None, stats=self.stats).handle_batch,
        )
        revoker = revoker_from_settings(s)
        # ... while each event is acted on once, by one process of the shared group.
        actions = ConsumerLoop(
            name=SERVICE,
            bootstrap=s.common.kafka_bootstrap,
            group_id=s.consumer_group,
            topics=[],
            handler=DeviceEventHandler(
                None,
                self.publish_sync,
                # Certificates revoked (CRL, broker reload), then sessions ended and the password forgotten.
                removal_handler(revoker, self.remove_sync if s.dynsec_port else None),
                on_disable=self.disable_sync if s.dynsec_port else None,
                stats=self.stats,
                legacy_topics=s.legacy_topics,
            ).handle_batch,
        )
        consumers = [feed, actions]
        warmer, tracker = follow_devices(
            self.cache, consumers, service=SERVICE, settings=s.common, device_manager_url=s.device_manager_url
        )
        bridge = AttrsBridge(
            cache=self.cache,
            producer=producer,
            max_payload_bytes=s.max_payload_bytes,
            max_depth=s.max_depth,
            lookup=lambda tenant, device_id: fetch_device(s.device_manager_url, tenant, device_id),
            stats=self.stats,
            shard=(s.shard_index, s.shard_count),
        )
        mqtt = MqttConnection(
            host=s.broker_host,
            port=s.broker_port,
            username=s.broker_username,
            password=s.broker_password,
            client_id=s.client_id,
            session_expiry_s=s.session_expiry_s,
            receive_maximum=s.receive_maximum,
            on_attrs=bridge.handle,
            subscriptions=[
                attrs_subscription(s.shard_index, s.shard_count),
                *([attrs_subscription(s.shard_index, s.shard_count, legacy=True)] if s.legacy_topics else []),
            ],
        )
        # Liveness on a connection of its own, so the broker's log never queues behind device messages.
        live = (
            MqttConnection(
                host=s.broker_host,
                port=s.broker_port,
                username=s.broker_username,
                password=s.broker_password,
                client_id=f"{s.client_id}-liveness",
                session_expiry_s=s.session_expiry_s,
                receive_maximum=s.receive_maximum,
                on_attrs=LivenessBridge(cache=self.cache, producer=producer).handle,
                subscriptions=[LOG_TOPIC],
            )
            if s.liveness
            else None
        )
        dynsec = (
            Dynsec(
                host=s.broker_host,
                port=s.dynsec_port,
                username=s.dynsec_username,
                password=s.dynsec_password,
                client_id=f"{s.client_id}-dynsec",
            )
            if s.dynsec_port
            else None
        )
        # Device credentials are also written, hashed, where every agent reads them (agents/core/credentials.py).
        credentials = CredentialStore.from_url(s.redis_url, integrity_key=s.credentials_key) if s.redis_url else None
        # A deleted tenant's passwords, certificates and sessions go, once per DELETE for the whole agent group.
        tenant_purge = TenantPurge(
            service=s.consumer_group,
            auth_url=s.common.auth_url,
            bootstrap=s.common.kafka_bootstrap,
            purge=TenantRemoval(
                credentials=credentials,
                revoker=revoker,
                end_sessions=self.remove_sync if s.dynsec_port else None,
                device_exists=lambda tenant, device_id: device_known(s.device_manager_url, tenant, device_id),
            ),
        )
        api: ApiServer | None = None
        if s.api_port:
            api = ApiServer(
                build_app(
                    SERVICE,
                    self.health,
                    lambda: load_public_key(s.common.jwt_public_key_file),
                    self.cache,
                    lambda tenant, device_id: fetch_device(s.device_manager_url, tenant, device_id),
                    # Device passwords go to the plugin only where it checks them (not when it only ends sessions).
                    Provisioner(dynsec) if dynsec is not None and s.dynsec_passwords else None,
                    run_on(self._loop),
                    credentials,
                    stats=self.stats,
                    management_tenant=s.common.management_tenant,
                ),
                s.common.bind_host,
                s.api_port,
            )
        threads = [
            threading.Thread(target=self._consume, args=(c, stop), name=f"device-events-{c.name}") for c in consumers
        ]
        self.health.add_check("mqtt", lambda: mqtt.connected)
        if live is not None:
            self.health.add_check("mqtt-liveness", lambda: live.connected)
        if dynsec is not None:
            self.health.add_check("dynamic-security", lambda: dynsec.connected)
        if credentials is not None:
            self.health.add_check("credential-store", credentials.ping)
        self.health.add_check("tenancy", lambda: tracker.ready)
        self.health.add_check("tenant-purge", lambda: tenant_purge.ready)
        self.health.add_check("device-cache", lambda: warmer.warmed)
        self.health.add_check(
            "device-events", lambda: all(t.is_alive() for t in threads) and all(c.ready.is_set() for c in consumers)
        )
        self._started()
        try:
            for thread in threads:
                thread.start()
            tenant_purge.start()
            warmer.start()
            await self._until(stop, self._loop.run_in_executor(None, tracker.start))
            await self._until(stop, self._wait(lambda: warmer.warmed, stop))
            if not stop.is_set():
                if live is not None:
                    await self._until(stop, live.start())
                if dynsec is not None:
                    await self._until(stop, dynsec.start())
                    self._provisioner = Provisioner(dynsec)
                if api is not None:
                    api.start()
                await self._until(stop, mqtt.start())
                self._mqtt = mqtt
                log.info("MQTT agent running", extra={"tenants": sorted(tracker.tenants)})
                await stop.wait()
        finally:
            log.info("MQTT agent stopping")
            for consumer in consumers:
                consumer.stop()
            await asyncio.get_running_loop().run_in_executor(None, tenant_purge.stop)
            for thread in threads:
                await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
            if self._mqtt is not None:
                await mqtt.stop(leave=s.leave_on_stop)
            self._mqtt = None
            if live is not None and live.connected:
                await live.stop(leave=s.leave_on_stop)
            if api is not None:
                api.stop()
            if dynsec is not None and dynsec.connected:
                await dynsec.stop()
            if credentials is not None:
                credentials.close()
            tracker.stop()
            warmer.stop()
            producer.flush()
            server.shutdown()
            server.server_close()
            log.info("MQTT agent stopped")

    def _consume(self, consumer: ConsumerLoop, stop: asyncio.Event) -> None:
        try:
            consumer.run()
        except Exception:
            log.exception("device-events consumer stopped")
            self.failed = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(stop.set)

    @staticmethod
    async def _wait(predicate: object, stop: asyncio.Event) -> None:
        assert callable(predicate)
        while not predicate() and not stop.is_set():
            await asyncio.sleep(0.1)

    @staticmethod
    async def _until(stop: asyncio.Event, awaitable: object) -> None:
        """Await ``awaitable`` unless ``stop`` is set first (then it is cancelled)."""
        task = asyncio.ensure_future(awaitable)  # type: ignore[call-overload]
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done():
            task.result()
        else:
            task.cancel()


def device_known(device_manager_url: str, tenant: str, device_id: str) -> bool:
    """Whether the device manager has this device now (Unavailable when it cannot say)."""
    try:
        return fetch_device(device_manager_url, tenant, device_id) is not None
    except (requests.RequestException, ValueError) as exc:
        raise Unavailable(f"cannot ask the device manager about {tenant}:{device_id}: {exc}") from exc
