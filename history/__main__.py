"""``python -m history``: serve the history API with gunicorn."""

from __future__ import annotations

import sys

from history.app import create_history_app
from history.settings import HistorySettings
from ondas import log as ondas_log
from ondas.web import serve


def main() -> int:
    settings = HistorySettings.from_env()
    ondas_log.setup("history", settings.common.log_level)
    serve(
        lambda: create_history_app(settings),
        settings.common.bind_host,
        settings.http_port,
        workers=settings.workers,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
