"""History settings, read from the environment here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from ondas.points_layout import DEFAULT_DB_PREFIX
from ondas.settings import CommonSettings, env_int, env_str

__all__ = ["DEFAULT_DB_PREFIX", "HistorySettings"]


@dataclass(frozen=True)
class HistorySettings:
    common: CommonSettings
    mongo_url: str
    http_port: int
    db_prefix: str = DEFAULT_DB_PREFIX
    max_results: int = 10_000
    workers: int = 1

    @classmethod
    def from_env(cls) -> HistorySettings:
        return cls(
            common=CommonSettings.from_env(),
            mongo_url=env_str("HISTORY_MONGO_URL", "mongodb://127.0.0.1:27017/"),
            http_port=env_int("HISTORY_HTTP_PORT", 8013),
            db_prefix=env_str("HISTORY_MONGO_DB_PREFIX", DEFAULT_DB_PREFIX),
            max_results=env_int("HISTORY_MAX_RESULTS", 10_000, minimum=1),
            workers=env_int("HISTORY_HTTP_WORKERS", 1),
        )
