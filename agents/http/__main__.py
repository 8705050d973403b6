"""``python -m agents.http``: the HTTP device agent, served by gunicorn (settings from the environment, see
settings.py; process model in app.py)."""

from __future__ import annotations

import sys

from agents.http.app import SERVICE
from agents.http.server import serve
from agents.http.settings import Settings
from ondas import log


def main() -> int:
    settings = Settings.from_env()
    log.setup(SERVICE, settings.common.log_level)
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
