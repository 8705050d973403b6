"""``python -m flowbroker api|worker``: parse, build, run."""

from __future__ import annotations

import argparse
import signal
from types import FrameType

from flowbroker.app import SERVICE, Worker, build_api
from flowbroker.settings import Settings
from ondas import kafka
from ondas import log as ondas_log
from ondas.web import serve


def run_worker(settings: Settings) -> None:
    worker = Worker(settings)

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.start()
        worker.run()
    finally:
        worker.stop()
        worker.close()
        kafka.close_producer()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m flowbroker", description="Ondas flowbroker")
    parser.add_argument("process", choices=["api", "worker"], help="api: the REST API; worker: the flow engine")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    ondas_log.setup(SERVICE, settings.common.log_level)
    if args.process == "api":
        serve(lambda: build_api(settings), settings.common.bind_host, settings.http_port, workers=settings.http_workers)
    else:
        run_worker(settings)


if __name__ == "__main__":
    main()
