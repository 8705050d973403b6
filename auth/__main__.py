"""``python -m auth``: serve the auth API (gunicorn; each worker also runs the tenancy outbox relay's thread)."""

from __future__ import annotations

from auth.app import build, prepare
from auth.settings import Settings
from ondas import log
from ondas.web import serve


def main() -> None:
    settings = Settings.from_env()
    log.setup("auth", settings.common.log_level)
    prepare(settings)
    serve(
        lambda: build(settings), settings.common.bind_host, settings.http_port, workers=settings.http_workers, threads=8
    )


if __name__ == "__main__":
    main()
