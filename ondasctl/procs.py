"""Child processes: start in their own process group with logs to a file, probe readiness, stop by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ProcSpec:
    name: str
    argv: list[str]
    log_file: Path
    ready: Callable[[], bool]
    kind: str = "infra"  # "infra" or "service"
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    cwd: Path | None = None
    stop_signal: int = signal.SIGTERM
    prepare: Callable[[], None] | None = None
    health_url: str | None = None
    port: int | None = None


class ProcError(RuntimeError):
    pass


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Proc:
    def __init__(self, spec: ProcSpec) -> None:
        self.spec = spec
        self.popen: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        if self.spec.prepare:
            self.spec.prepare()
        self.spec.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.spec.log_file, "ab")
        env = {**os.environ, **self.spec.env}
        try:
            self.popen = subprocess.Popen(
                self.spec.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.spec.cwd,
                start_new_session=True,
                user=self.spec.user,
                group=self.spec.user,
            )
        except FileNotFoundError as exc:
            raise ProcError(f"{self.spec.name}: cannot run {self.spec.argv[0]}: {exc}") from exc
        finally:
            log.close()
        self.started_at = time.time()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def is_ready(self) -> bool:
        try:
            return self.alive() and self.spec.ready()
        except Exception:  # noqa: BLE001  (a probe that fails for any reason means not ready)
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.popen.returncode if self.popen else None
                raise ProcError(
                    f"{self.spec.name} exited with code {code} while starting; last lines of "
                    f"{self.spec.log_file}:\n{tail(self.spec.log_file)}"
                )
            if self.is_ready():
                return
            time.sleep(0.1)
        raise ProcError(
            f"{self.spec.name} was not ready after {timeout:.0f}s; last lines of {self.spec.log_file}:\n"
            f"{tail(self.spec.log_file)}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        signal_group(self.popen.pid, self.spec.stop_signal)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)
        # Reap anything of the group that outlived its leader.
        signal_group(self.popen.pid, signal.SIGKILL)


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
