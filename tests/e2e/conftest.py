"""The whole platform, started the way a user starts it (ondasctl up), on free ports in a throw-away data
directory, and stopped at the end with ondasctl down (which must leave no process behind)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from ondasctl.config import PORTS
from ondasctl.procs import pid_alive
from tests.servers import make_test_config

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Platform:
    data_dir: Path
    env: dict[str, str]
    status: dict[str, Any]

    @property
    def gateway(self) -> str:
        return str(self.status["gateway_url"])

    @property
    def mqtt_port(self) -> int:
        return int(self.status["mqtt_port"])

    def port(self, component: str) -> int:
        return int(json.loads((self.data_dir / "run" / "ports.json").read_text())[component])

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ondasctl", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=check,
            timeout=240,
        )

    def token(self, username: str = "admin", passwd: str = "admin") -> str:
        r = requests.post(f"{self.gateway}/auth", json={"username": username, "passwd": passwd}, timeout=10)
        assert r.status_code == 200, r.text
        return str(r.json()["jwt"])

    def log(self, name: str) -> str:
        return (self.data_dir / "logs" / f"{name}.log").read_text(errors="replace")


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    cfg = make_test_config("ondas-e2e-")
    env = {**os.environ, "ONDAS_DATA_DIR": str(cfg.data_dir)}
    # The suite logs in far more than 5 times a minute from one address; test_gateway_matrix.py checks the real
    # limit of gateway/kong.yml on a gateway of its own.
    env["ONDAS_GATEWAY_RATE_LIMIT"] = "100000"
    # The flows' HTTP request node calls local test servers (tests/e2e/test_flows.py); by default it refuses
    # loopback and private destinations.
    env["FLOWBROKER_HTTP_ALLOWED_NETWORKS"] = "127.0.0.1/32"
    for name, (setting, _default) in PORTS.items():
        env[setting] = str(cfg.ports[name])
    p = Platform(cfg.data_dir, env, {})
    up = p.ctl("up", check=False)
    try:
        assert up.returncode == 0, f"ondasctl up failed:\n{up.stdout}\n{up.stderr}"
        p.status = json.loads(p.ctl("status", "--format", "json").stdout)
        yield p
    finally:
        state_file = cfg.data_dir / "run" / "state.json"
        pids = []
        if state_file.exists():
            state = json.loads(state_file.read_text())
            pids = [(x["name"], x["pid"]) for x in state["processes"] if x.get("pid")]
            pids.append(("supervisor", state["supervisor_pid"]))
        p.ctl("down", check=False)
        deadline = time.monotonic() + 20
        while any(pid_alive(pid) for _, pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [name for name, pid in pids if pid_alive(pid)]
        if os.environ.get("ONDAS_E2E_KEEP_DATA") != "1":  # set it to read the platform's logs after a failure
            shutil.rmtree(cfg.data_dir, ignore_errors=True)
        else:
            print(f"\nplatform data and logs kept in {cfg.data_dir}")
        assert not left, f"processes still running after 'ondasctl down': {left}"
