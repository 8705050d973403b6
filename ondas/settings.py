"""Reading settings from the environment. Each service declares its settings in its own
``settings.py`` as a frozen dataclass built with these helpers; this is the only code that reads
``os.environ`` for configuration.

Names follow ``<SERVICE>_<SECTION>_<KEY>``; settings shared by every service start with ``ONDAS_``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class SettingsError(ValueError):
    pass


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None or value == "":
        if default is None:
            raise SettingsError(f"setting {name} is required")
        return default
    return value


def env_optional(name: str) -> str | None:
    """The value of ``name``, or None when it is not set (or empty)."""
    value = os.environ.get(name)
    return value if value else None


def env_int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"setting {name} must be an integer, got {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise SettingsError(f"setting {name} must be at least {minimum}, got {value}")
    return value


def env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = env_str(name, default).strip().lower()
    if value not in choices:
        raise SettingsError(f"setting {name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"setting {name} must be a number, got {raw!r}") from exc


@dataclass(frozen=True)
class CommonSettings:
    """Settings every service shares."""

    kafka_bootstrap: str
    auth_url: str
    jwt_public_key_file: str
    log_level: str
    bind_host: str
    # The tenant whose administrators run the platform (``ONDAS_MANAGEMENT_TENANT``): they create and delete tenants
    # (auth reads this same setting) and run process-wide operations such as a log level. Not the prefix of the
    # platform-wide topics (ondas.tenant.MANAGEMENT_TOPIC_PREFIX).
    management_tenant: str = "admin"
    # How services check callers (ondas.authn.TokenCheck): "full" asks auth about every token and route (what the
    # gateway asks) and verifies service identities on internal routes; "signature" checks token signatures only
    # and leaves internal routes open, for tests without auth. ``from_env`` (every real process) defaults to
    # "full"; this default only serves code that builds settings by hand (tests).
    authz: str = "signature"
    # Seconds a verdict of auth on (tenant, token id, method, path) is reused: a revocation, deleted user or
    # password change takes effect on direct calls at most this much later. 0 asks auth on every request.
    authz_cache_seconds: float = 5.0
    # Seconds auth's answer about a service identity is reused.
    service_identity_cache_seconds: float = 60.0
    # Timeout of each question to auth; past it the request is refused with 503.
    auth_timeout_seconds: float = 3.0

    @classmethod
    def from_env(cls) -> CommonSettings:
        return cls(
            kafka_bootstrap=env_str("ONDAS_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            auth_url=env_str("ONDAS_AUTH_URL", "http://127.0.0.1:8010"),
            jwt_public_key_file=env_str("ONDAS_JWT_PUBLIC_KEY_FILE", ".data/keys/jwt-public.pem"),
            log_level=env_str("ONDAS_LOG_LEVEL", "INFO"),
            bind_host=env_str("ONDAS_BIND_HOST", "127.0.0.1"),
            management_tenant=env_str("ONDAS_MANAGEMENT_TENANT", "admin"),
            authz=env_choice("ONDAS_AUTHZ", ("full", "signature"), "full"),
            authz_cache_seconds=max(env_float("ONDAS_AUTHZ_CACHE_SECONDS", 5.0), 0.0),
            service_identity_cache_seconds=max(env_float("ONDAS_SERVICE_IDENTITY_CACHE_SECONDS", 60.0), 0.0),
            auth_timeout_seconds=max(env_float("ONDAS_AUTH_TIMEOUT_SECONDS", 3.0), 0.1),
        )


def service_identity() -> tuple[str, str] | None:
    """This process's service identity ``(name, key)`` for internal calls (``ONDAS_SERVICE_NAME`` and
    ``ONDAS_SERVICE_KEY``, set by the platform; see :mod:`ondas.service_identity`), or None when it has none."""
    name, key = os.environ.get("ONDAS_SERVICE_NAME", ""), os.environ.get("ONDAS_SERVICE_KEY", "")
    return (name, key) if name and key else None
