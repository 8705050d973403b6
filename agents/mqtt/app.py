"""The one place that wires the MQTT agent together: :meth:`MqttAgent.build` constructs and wires the parts
(nothing connected yet), :meth:`MqttAgent.run` starts them, runs until told to stop, and stops them.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from agents.core.admin import admin_blueprint
from agents.core.cache import CacheWarmer, Device, DeviceCache, fetch_device, follow_devices
from agents.core.credentials_redis import RedisCredentialStore
from agents.core.stats import Statistics
from agents.mqtt import api
from agents.mqtt.bridge import AttrsBridge
from agents.mqtt.broker import MessageHandler, MqttConnection, attrs_subscription
from agents.mqtt.certificates import CertificateEvents, CrlWatcher
from agents.mqtt.commands import DeviceEventHandler
from agents.mqtt.liveness import LOG_TOPIC, LivenessBridge
from agents.mqtt.provisioning import Dynsec, DynsecError, Provisioner
from agents.mqtt.revocation import removal_handler, revoker_from_settings
from agents.mqtt.settings import Settings
from agents.mqtt.tenants import TenantRemoval
from ondas.authn import TokenCheck, load_public_key
from ondas.errors import Unavailable
from ondas.health import Health, serve_health
from ondas.kafka import ConsumerLoop, Producer, get_producer
from ondas.settings import CommonSettings
from ondas.tenancy import TenancyTracker, TenantPurge
from ondas.topics import CERTIFICATES
from ondas.web import create_app

log = logging.getLogger("agents.mqtt.app")

SERVICE = "mqtt-agent"
PUBLISH_TIMEOUT_S = 30.0
API_TIMEOUT_S = 15.0


@dataclass
class Parts:
    """What :meth:`MqttAgent.build` wired and run() starts and stops."""

    producer: Producer
    consumers: list[ConsumerLoop]
    threads: list[threading.Thread]
    warmer: CacheWarmer
    tracker: TenancyTracker
    tenant_purge: TenantPurge
    mqtt: MqttConnection
    live: MqttConnection | None
    dynsec: Dynsec | None
    credentials: RedisCredentialStore | None
    api: ApiServer | None
    crl_watcher: CrlWatcher | None = None


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
        self._stop_event: asyncio.Event | None = None

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

    def end_sessions_sync(self, username: str) -> None:
        """End a revoked certificate's identity's sessions, its login left as it was (consumer thread)."""
        self._provision(lambda p: p.end_sessions(username))

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

    # -- construction ------------------------------------------------------------------------------------------
    def build(self) -> Parts:
        """Wire every part of the agent and register its readiness checks; nothing is connected or started
        (run() does that). Called on the agent's event loop (the API runs broker actions on it)."""
        s = self.settings
        loop = asyncio.get_running_loop()
        producer = get_producer(s.common.kafka_bootstrap)
        revoker = revoker_from_settings(s)
        # Device credentials are also written, hashed, where every agent reads them (agents/core/credentials_redis.py);
        # this agent, their writer, deletes a removed device's (the actions below).
        credentials = (
            RedisCredentialStore.from_url(s.redis_url, integrity_key=s.credentials_key) if s.redis_url else None
        )
        # Every process feeds its own device cache from every device event (a consumer group of its own) ...
        feed = ConsumerLoop(
            name=f"{SERVICE}-cache",
            bootstrap=s.common.kafka_bootstrap,
            group_id=f"{s.consumer_group}.cache.{s.client_id}",
            topics=[],
            handler=DeviceEventHandler(self.cache, None, stats=self.stats).handle_batch,
        )
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
                credentials=credentials,
            ).handle_batch,
        )
        consumers = [feed, actions]
        # x509_mgmt's certificates (the combined CRL kept current, revoked identities' sessions ended).
        also: list[tuple[ConsumerLoop, str]] = []
        crl_watcher = None
        if revoker is not None and revoker.combined is not None:
            crl_watcher = CrlWatcher(revoker)
            if s.x509_crl_file and s.certificate_events:
                certificates = ConsumerLoop(
                    name=f"{SERVICE}-certificates",
                    bootstrap=s.common.kafka_bootstrap,
                    group_id=f"{s.consumer_group}.certificates",
                    topics=[],
                    handler=CertificateEvents(
                        revoker,
                        Path(s.x509_crl_file),
                        self.end_sessions_sync if s.dynsec_port else None,
                        trust_file=Path(s.x509_trust_file) if s.x509_trust_file else None,
                    ).handle_batch,
                )
                consumers.append(certificates)
                also.append((certificates, CERTIFICATES))
        warmer, tracker = follow_devices(
            self.cache,
            [feed, actions],
            service=SERVICE,
            settings=s.common,
            device_manager_url=s.device_manager_url,
            also=also,
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
        mqtt = self._connection(
            s.client_id,
            bridge.handle,
            [
                attrs_subscription(s.shard_index, s.shard_count),
                *([attrs_subscription(s.shard_index, s.shard_count, legacy=True)] if s.legacy_topics else []),
            ],
        )
        # Liveness on a connection of its own, so the broker's log never queues behind device messages.
        live = (
            self._connection(
                f"{s.client_id}-liveness", LivenessBridge(cache=self.cache, producer=producer).handle, [LOG_TOPIC]
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
        api = (
            ApiServer(
                build_api_app(
                    SERVICE,
                    self.health,
                    lambda: load_public_key(s.common.jwt_public_key_file),
                    self.cache,
                    lambda tenant, device_id: fetch_device(s.device_manager_url, tenant, device_id),
                    # Device passwords go to the plugin only where it checks them (not when it only ends sessions).
                    Provisioner(dynsec) if dynsec is not None and s.dynsec_passwords else None,
                    run_on(loop),
                    credentials,
                    stats=self.stats,
                    management_tenant=s.common.management_tenant,
                ),
                s.common.bind_host,
                s.api_port,
            )
            if s.api_port
            else None
        )
        threads = [threading.Thread(target=self._consume, args=(c,), name=f"device-events-{c.name}") for c in consumers]
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
        return Parts(
            producer,
            consumers,
            threads,
            warmer,
            tracker,
            tenant_purge,
            mqtt,
            live,
            dynsec,
            credentials,
            api,
            crl_watcher,
        )

    def _connection(self, client_id: str, on_message: MessageHandler, subscriptions: list[str]) -> MqttConnection:
        """A connection of the agent to the broker's internal listener (its own login, a persistent session)."""
        s = self.settings
        return MqttConnection(
            host=s.broker_host,
            port=s.broker_port,
            username=s.broker_username,
            password=s.broker_password,
            client_id=client_id,
            session_expiry_s=s.session_expiry_s,
            receive_maximum=s.receive_maximum,
            on_attrs=on_message,
            subscriptions=subscriptions,
        )

    # -- lifecycle ---------------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Serve health at once, build the parts, start them in order, run until ``stop``, then stop them."""
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._stop_event = stop
        server = serve_health(self.health, s.common.bind_host, s.health_port)
        try:
            parts = self.build()
            self._started()
            try:
                await self._start(parts, stop)
                if not stop.is_set():
                    log.info("MQTT agent running", extra={"tenants": sorted(parts.tracker.tenants)})
                    await stop.wait()
            finally:
                await self._stop(parts)
        finally:
            server.shutdown()
            server.server_close()
            log.info("MQTT agent stopped")

    async def _start(self, p: Parts, stop: asyncio.Event) -> None:
        """Device events consumed (each tenant's once its cache is warm), tenancy learnt, caches warmed; only
        then the broker connections: liveness, dynamic security, the API, and last the device subscription."""
        assert self._loop is not None
        for thread in p.threads:
            thread.start()
        p.tenant_purge.start()
        p.warmer.start()
        await self._until(stop, self._loop.run_in_executor(None, p.tracker.start))
        await self._until(stop, self._wait(lambda: p.warmer.warmed, stop))
        if stop.is_set():
            return
        if p.live is not None:
            await self._until(stop, p.live.start())
        if p.dynsec is not None:
            await self._until(stop, p.dynsec.start())
            self._provisioner = Provisioner(p.dynsec)
        if p.api is not None:
            p.api.start()
        if p.crl_watcher is not None:
            p.crl_watcher.start()
        await self._until(stop, p.mqtt.start())
        self._mqtt = p.mqtt

    async def _stop(self, p: Parts) -> None:
        log.info("MQTT agent stopping")
        loop = asyncio.get_running_loop()
        for consumer in p.consumers:
            consumer.stop()
        await loop.run_in_executor(None, p.tenant_purge.stop)
        for thread in p.threads:
            if thread.is_alive():
                await loop.run_in_executor(None, thread.join, 10)
        if self._mqtt is not None:
            await p.mqtt.stop(leave=self.settings.leave_on_stop)
        self._mqtt = None
        if p.live is not None and p.live.connected:
            await p.live.stop(leave=self.settings.leave_on_stop)
        if p.api is not None:
            p.api.stop()
        if p.crl_watcher is not None:
            p.crl_watcher.stop()
        if p.dynsec is not None and p.dynsec.connected:
            await p.dynsec.stop()
        if p.credentials is not None:
            p.credentials.close()
        p.tracker.stop()
        p.warmer.stop()
        p.producer.flush()

    def _consume(self, consumer: ConsumerLoop) -> None:
        try:
            consumer.run()
        except Exception:
            log.exception("device-events consumer stopped")
            self.failed = True
            if self._loop is not None and self._stop_event is not None:
                self._loop.call_soon_threadsafe(self._stop_event.set)

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


# -- the credentials API's HTTP layer ------------------------------------------------------------------------------
def build_api_app(
    service: str,
    health: Health,
    public_key: Callable[[], str],
    cache: DeviceCache,
    lookup: Callable[[str, str], Device | None],
    provisioner: Provisioner | None,
    run: api.RunOnLoop,
    credentials: RedisCredentialStore | None = None,
    stats: Statistics | None = None,
    management_tenant: str = "admin",
    token_check: TokenCheck | None = None,
) -> Flask:
    """The API's Flask app: the credentials route (api.py) where there is somewhere to keep a password, and the
    operator routes."""
    # Operator (and credential) routes: every token checked as the gateway checks it (ONDAS_AUTHZ).
    if token_check is None:
        token_check = TokenCheck.from_settings(CommonSettings.from_env(), public_key)
    app = create_app(service, health, public_key=public_key, max_body_bytes=4096, token_check=token_check)
    if provisioner is not None or credentials is not None:  # else there is nowhere to keep a password
        app.register_blueprint(api.blueprint(lookup, provisioner, run, credentials))
    if stats is not None:
        app.register_blueprint(admin_blueprint(api.OPERATIONS_PREFIX, stats, cache, management_tenant))
    return app


def run_on(loop: asyncio.AbstractEventLoop) -> api.RunOnLoop:
    """Run a coroutine on the agent's event loop from a request thread and wait for it."""

    def run(coro: Coroutine[Any, Any, None]) -> None:
        fut = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            fut.result(API_TIMEOUT_S)
        except concurrent.futures.TimeoutError as exc:
            fut.cancel()
            raise Unavailable("the broker did not answer in time") from exc

    return run


class ApiServer:
    def __init__(self, app: Flask, host: str, port: int) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="mqtt-agent-api", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("API listening", extra={"port": self._server.server_port})

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which must be running
            self._server.shutdown()
            self._thread.join(5)
        self._server.server_close()
