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
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.run(stop)


def main() -> int:
    settings = Settings.from_env()
    log.setup(SERVICE, settings.common.log_level)
    agent = MqttAgent(settings)
    asyncio.run(_main(agent))
    return 1 if agent.failed else 0


if __name__ == "__main__":
    sys.exit(main())
