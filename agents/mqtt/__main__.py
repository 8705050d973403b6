"""``python -m agents.mqtt``: the MQTT IoT agent (settings from the environment, see settings.py)."""

from __future__ import annotations

import asyncio
import signal
import sys

from agents.mqtt.app import SERVICE, MqttAgent
from agents.mqtt.settings import Settings
from ondas import log


async def _main(agent: MqttAgent) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int, frame: object) -> None:
        # A plain handler, not loop.add_signal_handler: asyncio learns of such a signal from a byte in its
        # self-pipe, which the other threads' callbacks (Kafka deliveries) fill under load, and a signal arriving
        # then is lost (measured: SIGTERM ignored right after a 20,000-message burst, so the process was killed
        # and its persistent session left behind). A queued callback runs even when the pipe is full.
        loop.call_soon_threadsafe(stop.set)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    await agent.run(stop)


def main() -> int:
    settings = Settings.from_env()
    log.setup(SERVICE, settings.common.log_level)
    agent = MqttAgent(settings)
    asyncio.run(_main(agent))
    return 1 if agent.failed else 0


if __name__ == "__main__":
    sys.exit(main())
