"""The device manager's settings, read from the environment here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from ondas.settings import CommonSettings, env_float, env_int, env_str


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    db_url: str
    http_port: int
    http_workers: int
    relay_health_port: int
    relay_poll_seconds: float
    db_max_connections: int

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            common=CommonSettings.from_env(),
            db_url=env_str("DEVICE_MANAGER_DB_URL"),
            http_port=env_int("DEVICE_MANAGER_HTTP_PORT", 8011),
            http_workers=env_int("DEVICE_MANAGER_HTTP_WORKERS", 2),
            relay_health_port=env_int("DEVICE_MANAGER_RELAY_HEALTH_PORT", 8012),
            relay_poll_seconds=env_float("DEVICE_MANAGER_RELAY_POLL_SECONDS", 1.0),
            db_max_connections=env_int("DEVICE_MANAGER_DB_MAX_CONNECTIONS", 10),
        )
