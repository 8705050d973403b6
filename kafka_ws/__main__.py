"""``python -m kafka_ws``: serve websockets, socket.io and the ticket routes until SIGTERM/SIGINT."""

from __future__ import annotations

import sys

from aiohttp import web

from kafka_ws.app import SERVICE, KafkaWs
from kafka_ws.settings import KafkaWsSettings
from ondas import log as ondas_log


def main() -> int:
    settings = KafkaWsSettings.from_env()
    ondas_log.setup(SERVICE, settings.common.log_level)
    service = KafkaWs(settings)
    web.run_app(
        service.application(),
        host=settings.common.bind_host,
        port=settings.http_port,
        shutdown_timeout=settings.shutdown_seconds,
        print=None,
        access_log=None,
        handle_signals=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
