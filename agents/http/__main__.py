"""``python -m agents.http``: the HTTP device agent, served by gunicorn (settings from the environment, see
settings.py; process model in app.py)."""

from __future__ import annotations

import argparse
import sys

from agents.http.app import SERVICE
from agents.http.server import serve
from agents.http.settings import Settings
from ondas import log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agents.http", description="Ondas HTTP device agent")
    parser.add_argument(
        "listener",
        nargs="?",
        choices=["plain", "tls"],
        default="plain",
        help="plain: HTTP with Basic credentials (HTTP_AGENT_HTTP_PORT, behind the gateway); "
        "tls: HTTPS for devices, client certificate or Basic credentials (HTTP_AGENT_HTTPS_PORT)",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    log.setup(SERVICE, settings.common.log_level)
    serve(settings, tls=args.listener == "tls")
    return 0


if __name__ == "__main__":
    sys.exit(main())
