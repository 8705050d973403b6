"""Port selection: a port set explicitly must be free (else a clear error naming the setting); a default
port that is taken is replaced by the next free one, and the choice is reported."""

from __future__ import annotations

import socket
from dataclasses import dataclass


class PortError(RuntimeError):
    pass


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    # Also refuse ports someone listens on with SO_REUSEADDR semantics we cannot see by binding.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as c:
        c.settimeout(0.2)
        return c.connect_ex((host, port)) != 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class PortChoice:
    name: str
    setting: str
    port: int
    note: str | None = None


def choose(
    name: str, setting: str, default: int, explicit: int | None, taken: set[int], host: str = "127.0.0.1"
) -> PortChoice:
    """Pick the port of ``name``. ``taken`` holds ports already chosen for other components in this run."""
    if explicit is not None:
        if explicit in taken or not is_free(explicit, host):
            raise PortError(f"port {explicit} for {name} is already in use; set {setting} to another port")
        return PortChoice(name, setting, explicit)
    port = default
    while port in taken or not is_free(port, host):
        port += 1
        if port > 65535:
            raise PortError(f"no free port above {default} for {name}; set {setting}")
    note = None if port == default else f"port {default} is taken, {name} uses {port} (set {setting} to choose)"
    return PortChoice(name, setting, port, note)
