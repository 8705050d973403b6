"""The one place that wires the HTTP agent together.

Process model: gunicorn with ONE worker process (gthread) serving requests on ``HTTP_AGENT_THREADS`` threads.
Everything with a connection or a thread (Kafka producer, device-events consumer, tenancy tracker, cache warmer,
Redis clients, the credential-change listener and the liveness sweeper) is built in the worker, after the fork,
when gunicorn loads the app (:func:`create_worker_app`), and stopped when the worker exits. One process keeps
per-device order (a device lock in the process), the Prometheus counters and the device cache whole; to scale
out, run more agent instances: credentials and last-seen times are in Redis, and each instance follows every
device event (a consumer group of its own).

Start-up inside the worker: health routes answer at once; tenancy is learnt from auth (retried until auth
answers), each tenant's device cache is warmed from the device manager before its device events are consumed,
and ``/health/ready`` turns 200 when tenancy, caches, device events and Redis are all up. A request that
arrives while its tenant's cache is still warming is answered 503 (retry), never judged on a cold cache.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from flask import Flask

from agents.core.admin import admin_blueprint
from agents.core.cache import CacheWarmer, DeviceCache, fetch_device, follow_devices
from agents.core.certs import DeviceTrust, RevocationList
from agents.core.credentials_redis import RedisCredentialStore
from agents.core.stats import Statistics
from agents.http import api
from agents.http.consumers import device_event_handler
from agents.http.liveness import LastSeen, Liveness
from agents.http.service import Ingest
from agents.http.settings import Settings
from ondas.authn import TokenCheck, load_public_key
from ondas.health import Health
from ondas.kafka import ConsumerLoop, close_producer, get_producer, per_message
from ondas.settings import CommonSettings
from ondas.tenancy import TenancyTracker
from ondas.web import create_app

log = logging.getLogger("agents.http.app")

SERVICE = "http-agent"


class HttpAgent:
    """The agent's runtime in one worker process."""

    def __init__(self, settings: Settings, tls: bool = False) -> None:
        self.settings = settings
        self.tls = tls
        self.health = Health(SERVICE)
        self.cache = DeviceCache()
        self.stats = Statistics()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ingest: Ingest | None = None
        self._tracker: TenancyTracker | None = None
        self._warmer: CacheWarmer | None = None
        self._consumer: ConsumerLoop | None = None
        self._credentials: RedisCredentialStore | None = None

    @property
    def ingest(self) -> Ingest:
        if self._ingest is None:
            raise RuntimeError("the HTTP agent is not started")
        return self._ingest

    def start(self) -> None:
        s = self.settings
        producer = get_producer(s.common.kafka_bootstrap)
        # Read only: the MQTT agent writes the device credentials and deletes a removed device's.
        credentials = RedisCredentialStore.from_url(
            s.redis_url, integrity_key=s.credentials_key, cache_ttl=s.credentials_cache_s
        )
        self._credentials = credentials
        liveness = (
            Liveness(LastSeen(redis_client(s.redis_url)), producer, s.liveness_timeout_s)
            if s.liveness_timeout_s > 0
            else None
        )
        # Every instance follows every device event: a consumer group of its own.
        group = f"{SERVICE}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        consumer = ConsumerLoop(
            name=SERVICE,
            bootstrap=s.common.kafka_bootstrap,
            group_id=group,
            topics=[],
            handler=per_message(device_event_handler(self.cache, liveness, self.stats)),
        )
        warmer, tracker = follow_devices(
            self.cache, [consumer], service=SERVICE, settings=s.common, device_manager_url=s.device_manager_url
        )
        self._consumer, self._warmer, self._tracker = consumer, warmer, tracker
        self._ingest = Ingest(
            cache=self.cache,
            credentials=credentials,
            producer=producer,
            liveness=liveness,
            lookup=lambda tenant, device_id: fetch_device(s.device_manager_url, tenant, device_id),
            warming=lambda: not (tracker.ready and warmer.warmed),
            revocations=RevocationList(Path(s.tls_crl)) if self.tls else None,
            trust=DeviceTrust(Path(s.tls_ca), Path(s.tls_trust_file) if s.tls_trust_file else None)
            if self.tls
            else None,
            publish_timeout_s=s.publish_timeout_s,
        )
        consumer_thread = self._thread("device-events", consumer.run)
        self.health.add_check("tenancy", lambda: tracker.ready)
        self.health.add_check("device-cache", lambda: warmer.warmed)
        self.health.add_check("device-events", lambda: consumer_thread.is_alive() and consumer.ready.is_set())
        self.health.add_check("redis", credentials.ping)
        self.health.add_check("credential-changes", credentials.listening.is_set)
        warmer.start()
        self._thread("credential-changes", lambda: credentials.listen(self._stop))
        self._thread("tenancy-start", self._start_tracker)
        if liveness is not None:
            self._thread("liveness-sweeper", lambda: liveness.run(lambda: self.cache.tenants(), self._stop))
        log.info("HTTP agent started", extra={"pid": os.getpid()})

    def _thread(self, name: str, target: object) -> threading.Thread:
        assert callable(target)
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def _start_tracker(self) -> None:
        """Learn the tenants from auth, retrying until it answers (the agent is not ready meanwhile)."""
        assert self._tracker is not None
        while not self._stop.is_set():
            try:
                self._tracker.start()
                return
            except Exception as exc:  # noqa: BLE001  (auth or Kafka not reachable yet)
                log.warning("tenancy not available yet, retrying", extra={"error": f"{type(exc).__name__}: {exc}"})
                self._stop.wait(2.0)

    def stop(self) -> None:
        log.info("HTTP agent stopping")
        self._stop.set()
        if self._consumer is not None:
            self._consumer.stop()
        if self._tracker is not None:
            self._tracker.stop()
        if self._warmer is not None:
            self._warmer.stop()
        for thread in self._threads:
            thread.join(10)
        close_producer()
        if self._credentials is not None:
            self._credentials.close()
        log.info("HTTP agent stopped")


def build_app(
    service: str,
    health: Health,
    ingest: Callable[[], Ingest],
    *,
    max_body_bytes: int,
    max_depth: int,
    max_batch: int,
    stats: Statistics,
    cache: DeviceCache,
    public_key: Callable[[], str],
    management_tenant: str,
    token_check: TokenCheck | None = None,
) -> Flask:
    """The agent's Flask app: the platform's conventions, the device routes (api.py) with the agent's rules
    injected (``ingest`` returns them: built in the worker after fork) and the operator routes."""
    # Operator routes: every token checked as the gateway checks it (ONDAS_AUTHZ).
    if token_check is None:
        token_check = TokenCheck.from_settings(CommonSettings.from_env(), public_key)
    app = create_app(service, health, public_key=public_key, max_body_bytes=max_body_bytes, token_check=token_check)
    app.register_blueprint(
        api.blueprint(
            ingest, max_body_bytes=max_body_bytes, max_depth=max_depth, max_batch=max_batch, stats=stats, cache=cache
        )
    )
    app.register_blueprint(admin_blueprint(api.ROOT, stats, cache, management_tenant))
    return app


def redis_client(url: str) -> redis.Redis:
    """A Redis client of its own for last-seen times (the credential store keeps its own)."""
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30)


_agent: HttpAgent | None = None


def create_worker_app(settings: Settings, tls: bool = False) -> Flask:
    """Build and start the agent in this (worker) process and return its WSGI app; ``tls``: the TLS listener's
    worker (server.py), which takes client certificates."""
    global _agent
    agent = HttpAgent(settings, tls)
    app = build_app(
        SERVICE,
        agent.health,
        lambda: agent.ingest,
        max_body_bytes=settings.max_body_bytes,
        max_depth=settings.max_depth,
        max_batch=settings.max_batch,
        stats=agent.stats,
        cache=agent.cache,
        public_key=lambda: load_public_key(settings.common.jwt_public_key_file),
        management_tenant=settings.common.management_tenant,
    )
    agent.start()
    _agent = agent
    return app


def stop_worker_agent() -> None:
    global _agent
    if _agent is not None:
        _agent.stop()
        _agent = None
