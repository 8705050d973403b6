"""Real servers for the integration and e2e tiers, started by the project's own ondasctl specs on free
127.0.0.1 ports in a throw-away data directory. No mocks of these."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ondasctl.config import PORTS, Config
from ondasctl.ports import free_port
from ondasctl.procs import Proc, ProcSpec

# What the tests give both agents (and their own CredentialStore) as MQTT_AGENT_/HTTP_AGENT_CREDENTIALS_KEY.
DEVICE_CREDENTIALS_KEY = "test-device-credentials-key"


def make_test_config(prefix: str = "ondas-test-") -> Config:
    # Not under pytest's own tmp dir: that one is private to root and PostgreSQL runs as 'postgres'.
    data_dir = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("ONDAS_TEST_TMP", "/tmp")))
    data_dir.chmod(0o755)
    taken: set[int] = set()
    ports: dict[str, int] = {}
    for name in PORTS:
        port = free_port()
        while port in taken:
            port = free_port()
        ports[name] = port
        taken.add(port)
    return Config(data_dir=data_dir, ports=ports)


class Servers:
    """Starts each server the first time a test asks for it; stops them all at the end of the session."""

    def __init__(self) -> None:
        self.cfg = make_test_config()
        self._procs: dict[str, Proc] = {}

    def ensure(self, name: str) -> Config:
        if name not in self._procs:
            from ondasctl import infra

            builders = {
                "kafka": infra.kafka_spec,
                "postgres": infra.postgres_spec,
                "redis": infra.redis_spec,
                "mongo": lambda c: infra.mongo_spec(c, ttl_sweep_seconds=1),
                "mosquitto": infra.mosquitto_spec,
            }
            spec: ProcSpec = builders[name](self.cfg)
            proc = Proc(spec)
            proc.start()
            self._procs[name] = proc
            proc.wait_ready(60)
        return self.cfg

    def proc(self, name: str) -> Proc:
        return self._procs[name]

    def stop(self) -> None:
        for proc in reversed(list(self._procs.values())):
            proc.stop()
        shutil.rmtree(self.cfg.data_dir, ignore_errors=True)
