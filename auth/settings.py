from __future__ import annotations

from dataclasses import dataclass

from ondas.settings import CommonSettings, env_int, env_str


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    http_port: int
    db_url: str
    jwt_private_key_file: str
    jwt_ttl_seconds: int
    admin_password: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            common=CommonSettings.from_env(),
            http_port=env_int("AUTH_HTTP_PORT", 8010),
            db_url=env_str("AUTH_DB_URL", "postgresql://ondas@127.0.0.1:5432/ondas_auth"),
            jwt_private_key_file=env_str("AUTH_JWT_PRIVATE_KEY_FILE", ".data/keys/jwt-private.pem"),
            jwt_ttl_seconds=env_int("AUTH_JWT_TTL_SECONDS", 900),
            admin_password=env_str("AUTH_ADMIN_PASSWORD", "admin"),
        )
