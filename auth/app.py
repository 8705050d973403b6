"""Wiring of auth: settings -> store, cache, hasher, tenancy outbox relay -> service -> HTTP app."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from auth.api import blueprint
from auth.events import Publisher, TenancyRelay
from auth.passwords import Hasher, PasswordPolicy
from auth.service import AuthConfig, AuthService, LoginThrottle, parse_networks
from auth.settings import Settings
from auth.store_postgres import PostgresAuthStore
from auth.store_redis import RedisAuthCache, derive_cache_key
from ondas.health import Health
from ondas.kafka import Producer, get_producer, wait_for_broker
from ondas.settings import SettingsError
from ondas.web import create_app

log = logging.getLogger("auth.app")


def _config(settings: Settings) -> AuthConfig:
    if settings.jwt_ttl_seconds < 1:
        raise SettingsError("AUTH_JWT_TTL_SECONDS must be at least 1")
    return AuthConfig(
        private_key=Path(settings.jwt_private_key_file).read_text(),
        public_key=Path(settings.common.jwt_public_key_file).read_text(),
        ttl_seconds=settings.jwt_ttl_seconds,
        management_tenant=settings.management_tenant,
        service_master_secret=settings.service_master_secret,
        reset_ttl_seconds=settings.passwd_reset_minutes * 60,
        policy=PasswordPolicy(min_length=settings.passwd_min_len, history=settings.passwd_history_len),
        throttle=_throttle(settings),
        test_exit_after_tenant_commit=settings.test_exit_after_tenant_commit,
    )


def _throttle(settings: Settings) -> LoginThrottle:
    if settings.login_backoff_seconds <= 0 or settings.login_backoff_max_seconds < settings.login_backoff_seconds:
        raise SettingsError("AUTH_LOGIN_BACKOFF_SECONDS must be > 0 and at most AUTH_LOGIN_BACKOFF_MAX_SECONDS")
    try:
        proxies = parse_networks(settings.trusted_proxies)
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc
    return LoginThrottle(
        user_failures=settings.login_user_failures,
        address_failures=settings.login_address_failures,
        window_seconds=settings.login_window_seconds,
        backoff_seconds=settings.login_backoff_seconds,
        backoff_max_seconds=settings.login_backoff_max_seconds,
        trusted_proxies=proxies,
    )


def _relay(settings: Settings, publisher: Publisher) -> TenancyRelay:
    return TenancyRelay(
        settings.db_url, publisher, settings.common.kafka_bootstrap, poll_interval=settings.outbox_poll_seconds
    )


def _service(settings: Settings, store: PostgresAuthStore, cache: RedisAuthCache, relay: TenancyRelay) -> AuthService:
    return AuthService(
        store,
        cache,
        _config(settings),
        Hasher(time_cost=settings.argon2_time_cost, memory_kib=settings.argon2_memory_kib),
        tenancy=relay,
    )


def _cache(settings: Settings) -> RedisAuthCache:
    # Its values are signed with a key derived from the service master secret (see auth.store_redis).
    return RedisAuthCache(
        settings.redis_url,
        decision_ttl=settings.cache_ttl_seconds,
        prefix=settings.cache_prefix,
        key=derive_cache_key(settings.service_master_secret),
    )


def build(settings: Settings) -> Flask:
    """The HTTP app of one worker, with the tenancy outbox relay's thread running in it (stopped by
    :func:`close`)."""
    store = PostgresAuthStore(settings.db_url)
    cache = _cache(settings)
    public_key = Path(settings.common.jwt_public_key_file).read_text()
    relay = _relay(settings, get_producer(settings.common.kafka_bootstrap))
    service = _service(settings, store, cache, relay)
    health = Health("auth")
    health.add_check("postgres", store.ping)
    # Not a readiness check: without Redis auth still decides (from PostgreSQL), only slower.
    app = create_app("auth", health, public_key=lambda: public_key)
    app.register_blueprint(blueprint(service))
    app.extensions["auth_resources"] = (store, cache, relay)
    relay.start()
    return app


def close(app: Flask) -> None:
    """Release what :func:`build` opened (tests build many apps in one process)."""
    store, cache, relay = app.extensions["auth_resources"]
    relay.close()
    store.close()
    cache.close()


def prepare(settings: Settings) -> None:
    """One-time start-up work, run once before the HTTP workers start: migrate and seed the database, and publish
    the tenancy events a crash left in the outbox."""
    wait_for_broker(settings.common.kafka_bootstrap)
    # Runs in gunicorn's master before it forks: use a producer of its own, never the process singleton.
    store = PostgresAuthStore(settings.db_url)
    cache = _cache(settings)
    producer = Producer(settings.common.kafka_bootstrap)
    relay = _relay(settings, producer)
    try:
        _service(settings, store, cache, relay).seed(settings.admin_password)
        try:
            relay.drain()
        except Exception as exc:  # noqa: BLE001  (the workers' relay threads retry)
            log.warning("tenancy events left pending at start-up", extra={"error": f"{type(exc).__name__}: {exc}"})
    finally:
        relay.close()
        producer.close()
        cache.close()
        store.close()
