"""Wiring of auth: settings -> store -> service -> HTTP app."""

from __future__ import annotations

from pathlib import Path

from flask import Flask

from auth.api import bp
from auth.service import AuthService
from auth.settings import Settings
from auth.store_postgres import PostgresAuthStore
from ondas.health import Health
from ondas.kafka import Producer, get_producer, wait_for_broker
from ondas.web import create_app


def _service(settings: Settings, store: PostgresAuthStore, producer: Producer) -> AuthService:
    return AuthService(
        store,
        private_key=Path(settings.jwt_private_key_file).read_text(),
        public_key=Path(settings.common.jwt_public_key_file).read_text(),
        ttl_seconds=settings.jwt_ttl_seconds,
        producer=producer,
        kafka_bootstrap=settings.common.kafka_bootstrap,
    )


def build(settings: Settings) -> Flask:
    store = PostgresAuthStore(settings.db_url)
    public_key = Path(settings.common.jwt_public_key_file).read_text()
    service = _service(settings, store, get_producer(settings.common.kafka_bootstrap))
    health = Health("auth")
    health.add_check("postgres", store.ping)
    app = create_app("auth", health, public_key=lambda: public_key)
    app.extensions["auth_service"] = service
    app.register_blueprint(bp)
    return app


def prepare(settings: Settings) -> None:
    """One-time start-up work, run once before the HTTP workers start."""
    wait_for_broker(settings.common.kafka_bootstrap)
    # Runs in gunicorn's master before it forks: use a producer of its own, never the process singleton.
    store = PostgresAuthStore(settings.db_url)
    producer = Producer(settings.common.kafka_bootstrap)
    try:
        _service(settings, store, producer).seed(settings.admin_password)
    finally:
        producer.close()
        store.close()
