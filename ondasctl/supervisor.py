"""The supervisor: a background process that starts the platform in order, restarts any process that dies,
records what runs in ``run/state.json``, and stops everything it started (by PID) on SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ondasctl import infra, platform
from ondasctl.config import Config
from ondasctl.pki import ensure_jwt_keys
from ondasctl.procs import Proc, ProcError

log = logging.getLogger("ondasctl.supervisor")

START_TIMEOUT = 90.0
MAX_BACKOFF = 30.0


class Supervisor:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.procs: list[Proc] = []
        self.phase = "starting"
        self.error: str | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._ready: dict[str, bool] = {}

    # -- state file ------------------------------------------------------------------------------------------
    def write_state(self) -> None:
        state: dict[str, Any] = {
            "supervisor_pid": os.getpid(),
            "phase": self.phase,
            "error": self.error,
            "updated": time.time(),
            "config": json.loads(self.cfg.to_json()),
            "processes": [
                {
                    "name": p.spec.name,
                    "kind": p.spec.kind,
                    "pid": p.pid,
                    "port": p.spec.port,
                    "alive": p.alive(),
                    "ready": self._ready.get(p.spec.name, False),
                    "restarts": p.restarts,
                    "log": str(p.spec.log_file),
                }
                for p in self.procs
            ],
        }
        tmp = self.cfg.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.cfg.state_file)

    # -- start -----------------------------------------------------------------------------------------------
    def _start_group(self, procs: list[Proc]) -> None:
        for p in procs:
            if self._stopping.is_set():
                return
            log.info("starting %s", p.spec.name)
            p.start()
            self.procs.append(p)
            self.write_state()
        for p in procs:
            p.wait_ready(START_TIMEOUT)
            self._ready[p.spec.name] = True
            log.info("%s is ready (pid %s)", p.spec.name, p.pid)
            self.write_state()

    def start(self) -> None:
        cfg = self.cfg
        ensure_jwt_keys(cfg.keys)
        self._start_group([Proc(s) for s in platform.infra_specs(cfg)])
        infra.create_databases(cfg, platform.DATABASES)
        services = {s.name: s for s in platform.service_specs(cfg)}
        # auth first: every other service learns the tenants from it.
        self._start_group([Proc(services.pop("auth"))])
        self._start_group([Proc(s) for s in services.values()])
        self._start_group([Proc(platform.gateway_spec(cfg))])
        self.phase = "ready"
        self.write_state()
        log.info("platform is ready")

    # -- run -------------------------------------------------------------------------------------------------
    def monitor(self) -> None:
        backoff: dict[str, float] = {}
        next_try: dict[str, float] = {}
        last_probe = 0.0
        while not self._stopping.is_set():
            now = time.monotonic()
            for p in list(self.procs):
                name = p.spec.name
                if p.alive():
                    if now - p.started_at > 60:
                        backoff.pop(name, None)
                    continue
                if now < next_try.get(name, 0):
                    continue
                code = p.popen.returncode if p.popen else None
                log.warning("%s exited (code %s); restarting", name, code)
                self._ready[name] = False
                try:
                    p.stop(2)
                    p.start()
                    p.restarts += 1
                except (ProcError, OSError) as exc:
                    log.error("could not restart %s: %s", name, exc)
                delay = min(MAX_BACKOFF, backoff.get(name, 0.5) * 2)
                backoff[name] = delay
                next_try[name] = now + delay
            if now - last_probe > 2:
                last_probe = now
                for p in self.procs:
                    self._ready[p.spec.name] = p.is_ready()
                self.write_state()
            self._stopping.wait(0.5)

    def stop(self) -> None:
        self._stopping.set()
        self.phase = "stopping"
        self.write_state()
        # Reverse order: gateway, services, then infrastructure.
        for p in reversed(self.procs):
            log.info("stopping %s (pid %s)", p.spec.name, p.pid)
            p.stop()
        self.phase = "stopped"
        self.write_state()


def run(cfg: Config) -> int:
    """Entry point of the background supervisor process."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    cfg.run.mkdir(parents=True, exist_ok=True)
    cfg.supervisor_pid_file.write_text(str(os.getpid()))
    sup = Supervisor(cfg)
    stop_requested = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop_requested.set()
        sup._stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    code = 0
    try:
        sup.start()
        if not stop_requested.is_set():
            sup.monitor()
    except Exception as exc:
        log.exception("platform failed to start")
        sup.error = str(exc)
        sup.phase = "failed"
        sup.write_state()
        code = 1
    finally:
        failed = sup.phase == "failed"
        sup.stop()
        if failed:
            sup.phase = "failed"
            sup.write_state()
        Path(cfg.supervisor_pid_file).unlink(missing_ok=True)
    return code
