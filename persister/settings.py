"""Persister settings, read from the environment here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from ondas.points_layout import DEFAULT_DB_PREFIX
from ondas.settings import CommonSettings, env_choice, env_int, env_str

__all__ = ["DEFAULT_DB_PREFIX", "PersisterSettings"]


@dataclass(frozen=True)
class PersisterSettings:
    common: CommonSettings
    mongo_url: str
    health_port: int
    db_prefix: str = DEFAULT_DB_PREFIX
    group_id: str = "persister"
    batch_size: int = 500
    ttl_seconds: int = 0
    drop_removed_devices: bool = False

    @classmethod
    def from_env(cls) -> PersisterSettings:
        return cls(
            common=CommonSettings.from_env(),
            mongo_url=env_str("PERSISTER_MONGO_URL", "mongodb://127.0.0.1:27017/"),
            health_port=env_int("PERSISTER_HEALTH_PORT", 8014),
            db_prefix=env_str("PERSISTER_MONGO_DB_PREFIX", DEFAULT_DB_PREFIX),
            group_id=env_str("PERSISTER_KAFKA_GROUP", "persister"),
            batch_size=env_int("PERSISTER_KAFKA_BATCH_SIZE", 500),
            ttl_seconds=env_int("PERSISTER_DATA_TTL_SECONDS", 0, minimum=0),
            drop_removed_devices=env_choice("PERSISTER_ON_DEVICE_REMOVE", ("keep", "drop"), "keep") == "drop",
        )
