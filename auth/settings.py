from __future__ import annotations

from dataclasses import dataclass, replace

from ondas.settings import CommonSettings, SettingsError, env_float, env_int, env_optional, env_str


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    http_port: int
    db_url: str
    redis_url: str
    jwt_private_key_file: str
    jwt_ttl_seconds: int
    admin_password: str
    management_tenant: str
    service_master_secret: str
    cache_ttl_seconds: int
    cache_prefix: str
    passwd_min_len: int
    passwd_history_len: int
    passwd_reset_minutes: int
    argon2_time_cost: int
    argon2_memory_kib: int
    # Login throttling (see AuthService.login and docs/api/auth.yaml). Defaults: after 5 failed logins of one
    # (tenant, username), or 20 from one client address, each further failure refuses logins for 1 s, doubling up
    # to 15 minutes; failures are forgotten 15 minutes after the last backoff ends.
    login_user_failures: int = 5
    login_address_failures: int = 20
    login_window_seconds: int = 900
    login_backoff_seconds: float = 1.0
    login_backoff_max_seconds: float = 900.0
    # Peers whose X-Forwarded-For (or, without it, X-Real-IP) names the client: the gateway. Loopback by default
    # (the local gateway of `make up`); a deployment sets the gateway's addresses (CIDRs, comma-separated).
    trusted_proxies: str = "127.0.0.1/32,::1/128"
    # HTTP worker processes (gunicorn), each with its own thread of the tenancy outbox relay.
    http_workers: int = 2
    # Seconds between two rounds of the outbox relay's thread (which publishes only what the request that made a
    # tenant change could not: after a crash or while the broker is away).
    outbox_poll_seconds: float = 2.0
    # Test hook, never set in a deployment (AUTH_TEST_EXIT_AFTER_TENANT_COMMIT): the process exits right after
    # committing the creation of the tenant of this name, before publishing its event (crash-safety tests).
    test_exit_after_tenant_commit: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        common = CommonSettings.from_env()
        management_tenant = _management_tenant()
        return cls(
            common=replace(common, management_tenant=management_tenant),
            http_port=env_int("AUTH_HTTP_PORT", 8010),
            db_url=env_str("AUTH_DB_URL", "postgresql://ondas@127.0.0.1:5432/ondas_auth"),
            redis_url=env_str("AUTH_REDIS_URL", "redis://127.0.0.1:6379/0"),
            jwt_private_key_file=env_str("AUTH_JWT_PRIVATE_KEY_FILE", ".data/keys/jwt-private.pem"),
            jwt_ttl_seconds=env_int("AUTH_JWT_TTL_SECONDS", 900),
            admin_password=env_str("AUTH_ADMIN_PASSWORD", "admin"),
            # The tenant whose administrators create and delete tenants (dojot's user 'admin' is in 'admin').
            management_tenant=management_tenant,
            # Empty: the internal routes (/admin/...) refuse every caller.
            service_master_secret=env_str("AUTH_SERVICE_MASTER_SECRET", ""),
            cache_ttl_seconds=env_int("AUTH_CACHE_TTL_SECONDS", 720),
            cache_prefix=env_str("AUTH_CACHE_PREFIX", "ondas:auth:"),
            passwd_min_len=env_int("AUTH_PASSWD_MIN_LEN", 8),
            passwd_history_len=env_int("AUTH_PASSWD_HISTORY_LEN", 4),
            passwd_reset_minutes=env_int("AUTH_PASSWD_RESET_MINUTES", 30),
            argon2_time_cost=env_int("AUTH_ARGON2_TIME_COST", 2),
            argon2_memory_kib=env_int("AUTH_ARGON2_MEMORY_KIB", 19456),
            login_user_failures=env_int("AUTH_LOGIN_USER_FAILURES", 5, minimum=1),
            login_address_failures=env_int("AUTH_LOGIN_ADDRESS_FAILURES", 20, minimum=1),
            login_window_seconds=env_int("AUTH_LOGIN_WINDOW_SECONDS", 900, minimum=1),
            login_backoff_seconds=env_float("AUTH_LOGIN_BACKOFF_SECONDS", 1.0),
            login_backoff_max_seconds=env_float("AUTH_LOGIN_BACKOFF_MAX_SECONDS", 900.0),
            trusted_proxies=env_str("AUTH_TRUSTED_PROXIES", "127.0.0.1/32,::1/128"),
            http_workers=env_int("AUTH_HTTP_WORKERS", 2, minimum=1),
            outbox_poll_seconds=max(env_float("AUTH_OUTBOX_POLL_SECONDS", 2.0), 0.05),
            test_exit_after_tenant_commit=env_optional("AUTH_TEST_EXIT_AFTER_TENANT_COMMIT") or "",
        )


def _management_tenant() -> str:
    """The administrators' tenant: ``ONDAS_MANAGEMENT_TENANT``, the setting every service reads.
    ``AUTH_MANAGEMENT_TENANT`` (auth's own name for it in earlier versions) is still read when the former is not
    set; set to different values, they are refused."""
    platform, legacy = env_optional("ONDAS_MANAGEMENT_TENANT"), env_optional("AUTH_MANAGEMENT_TENANT")
    if platform and legacy and platform != legacy:
        raise SettingsError(
            f"ONDAS_MANAGEMENT_TENANT ({platform!r}) and AUTH_MANAGEMENT_TENANT ({legacy!r}) differ; set only the first"
        )
    return platform or legacy or "admin"
