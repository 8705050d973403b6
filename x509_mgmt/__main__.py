"""``python -m x509_mgmt api|worker``: parse, build, run."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType

from ondas import kafka
from ondas import log as ondas_log
from ondas.health import serve_health
from ondas.web import serve
from x509_mgmt.app import SERVICE, build_api, build_worker
from x509_mgmt.settings import Settings


def run_api(settings: Settings) -> None:
    serve(lambda: build_api(settings), settings.common.bind_host, settings.http_port, workers=settings.http_workers)


def run_worker(settings: Settings) -> None:
    worker = build_worker(settings)
    server = serve_health(worker.health, settings.common.bind_host, settings.worker_health_port)
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.start()
        while not stop.wait(1.0):
            if worker.failed or worker.purge.failed:
                raise SystemExit("a consumer of x509_mgmt's worker stopped; see the log")
    finally:
        worker.stop()
        worker.service.store.close()
        server.shutdown()
        kafka.close_producer()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m x509_mgmt", description="Ondas certificate authority")
    parser.add_argument(
        "process",
        nargs="?",
        default="api",
        choices=["api", "worker"],
        help="api: the REST API (with its outbox relay); worker: device events (removed devices) and tenancy",
    )
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    ondas_log.setup(SERVICE, settings.common.log_level)
    if args.process == "api":
        run_api(settings)
    else:
        run_worker(settings)


if __name__ == "__main__":
    main()
