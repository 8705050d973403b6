"""``python -m auth``: serve the auth API."""

from __future__ import annotations

from auth.app import build, prepare
from auth.settings import Settings
from ondas import log
from ondas.web import serve


def main() -> None:
    settings = Settings.from_env()
    log.setup("auth", settings.common.log_level)
    prepare(settings)
    serve(lambda: build(settings), settings.common.bind_host, settings.http_port, workers=2, threads=8)


if __name__ == "__main__":
    main()
