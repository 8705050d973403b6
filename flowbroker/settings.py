"""The flowbroker's settings, read from the environment here and nowhere else."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ondas.settings import CommonSettings, SettingsError, env_float, env_int, env_optional, env_str


def _networks(name: str) -> str:
    value = env_optional(name) or ""
    for part in value.split(","):
        if part.strip():
            try:
                ipaddress.ip_network(part.strip(), strict=False)
            except ValueError as exc:
                raise SettingsError(f"setting {name}: {part.strip()!r} is not a network (CIDR)") from exc
    return value


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    db_url: str
    redis_url: str
    http_port: int
    http_workers: int
    worker_health_port: int
    group_id: str
    db_max_connections: int
    # Seconds a worker reuses its copy of the enabled flows before reading them again.
    flows_refresh_seconds: float
    # Flows run side by side on this many threads (a slow node delays only its own flow).
    flow_threads: int
    # Node executions allowed for one message in one flow, and flow generations of a device-data message (a flow
    # writing to a device whose data feeds the flow again): past either, the branch stops with an error.
    max_hops: int
    max_generations: int
    # HTTP request node: seconds per request, largest response body, and the networks it may call even though they
    # are private or loopback (comma-separated CIDRs; none by default).
    http_timeout_seconds: float
    http_max_response_bytes: int
    http_allowed_networks: str
    batch_size: int
    # The device manager (its internal API): checks that the devices a flow names are the tenant's, and gives the
    # worker devices it has not seen an event of. None: no checks, only what device events say.
    device_manager_url: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            common=CommonSettings.from_env(),
            db_url=env_str("FLOWBROKER_DB_URL"),
            redis_url=env_str("FLOWBROKER_REDIS_URL", "redis://127.0.0.1:6379/0"),
            http_port=env_int("FLOWBROKER_HTTP_PORT", 8021),
            http_workers=env_int("FLOWBROKER_HTTP_WORKERS", 2, minimum=1),
            worker_health_port=env_int("FLOWBROKER_WORKER_HEALTH_PORT", 8022),
            group_id=env_str("FLOWBROKER_KAFKA_GROUP", "flowbroker"),
            db_max_connections=env_int("FLOWBROKER_DB_MAX_CONNECTIONS", 8, minimum=1),
            flows_refresh_seconds=max(env_float("FLOWBROKER_FLOWS_REFRESH_SECONDS", 2.0), 0.0),
            flow_threads=env_int("FLOWBROKER_FLOW_THREADS", 8, minimum=1),
            max_hops=env_int("FLOWBROKER_MAX_HOPS", 1000, minimum=1),
            max_generations=env_int("FLOWBROKER_MAX_GENERATIONS", 16, minimum=1),
            http_timeout_seconds=max(env_float("FLOWBROKER_HTTP_TIMEOUT_SECONDS", 10.0), 0.1),
            http_max_response_bytes=env_int("FLOWBROKER_HTTP_MAX_RESPONSE_BYTES", 1 << 20, minimum=1),
            http_allowed_networks=_networks("FLOWBROKER_HTTP_ALLOWED_NETWORKS"),
            batch_size=env_int("FLOWBROKER_BATCH_SIZE", 200, minimum=1),
            device_manager_url=env_optional("FLOWBROKER_DEVICE_MANAGER_URL"),
        )
