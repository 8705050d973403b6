"""``python -m persister``: store device data in MongoDB until SIGTERM/SIGINT."""

from __future__ import annotations

import signal
import sys
from types import FrameType

from ondas import log as ondas_log
from ondas.kafka import StopConsuming, get_producer
from persister.app import Persister
from persister.settings import PersisterSettings


def main() -> int:
    settings = PersisterSettings.from_env()
    ondas_log.setup("persister", settings.common.log_level)
    persister = Persister(settings)

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        persister.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    persister.start()
    try:
        persister.run()
    except StopConsuming:
        return 1
    finally:
        persister.close()
        get_producer(settings.common.kafka_bootstrap).close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
