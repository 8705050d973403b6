"""``python -m ondasctl.mongo_server``: the embedded MongoDB-compatible store (SecantusDB) with the settings the
platform needs. Its own command line has no option for the TTL sweep interval (and ignores it in a config file),
so the platform starts the server class itself.

MongoDB's TTL monitor runs every 60 s; that is the default here too. Tests use 1 s so that expiry shows quickly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage-path", required=True, help="data folder, or :memory: for a throw-away store")
    parser.add_argument("--ttl-sweep-seconds", type=float, default=60.0)
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from secantus.server import SecantusDBServer

    server = SecantusDBServer(
        host=args.host,
        port=args.port,
        storage_path=args.storage_path,
        ttl_sweep_seconds=args.ttl_sweep_seconds,
        enable_test_commands=False,
    )

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        server.stop()
        sys.exit(0)

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    server.start()
    server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
