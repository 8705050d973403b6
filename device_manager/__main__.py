"""``python -m device_manager api|relay``: parse, build, run."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from device_manager.app import SERVICE, build_api, build_relay, build_tenant_purge, migrate
from device_manager.settings import Settings
from ondas import kafka
from ondas import log as ondas_log
from ondas.health import Health, serve_health
from ondas.web import serve


def run_api(settings: Settings) -> None:
    serve(lambda: build_api(settings), settings.common.bind_host, settings.http_port, workers=settings.http_workers)


def run_relay(settings: Settings) -> None:
    migrate(settings)  # the relay reads the outbox table, so it may start before the API
    relay = build_relay(settings)
    tenant_purge, purge_store = build_tenant_purge(settings)
    health = Health(f"{SERVICE}-relay")
    health.add_check("relay", relay.ready)
    health.add_check("tenant-purge", lambda: tenant_purge.ready)
    server = serve_health(
        health,
        settings.common.bind_host,
        settings.relay_health_port,
        extra={"/status": lambda: (200, relay.status())},
    )
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        tenant_purge.start()
        relay.run(stop)
    finally:
        tenant_purge.stop()
        purge_store.close()
        server.shutdown()
        kafka.get_producer(settings.common.kafka_bootstrap).close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m device_manager", description="Ondas device manager")
    parser.add_argument("process", choices=["api", "relay"], help="api: the REST API; relay: the outbox relay")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    ondas_log.setup(SERVICE, settings.common.log_level)
    if args.process == "api":
        run_api(settings)
    else:
        run_relay(settings)


if __name__ == "__main__":
    main()
