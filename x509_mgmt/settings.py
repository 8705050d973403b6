"""The certificate authority's settings, read from the environment here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from ondas.settings import CommonSettings, env_choice, env_float, env_int, env_str


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    db_url: str
    http_port: int
    http_workers: int
    # The worker process's (python -m x509_mgmt worker) health and metrics port.
    worker_health_port: int
    db_max_connections: int
    # The issuing CA's files and the CRL; the root's key goes to root_key_dir (default <data_dir>/root), a
    # directory that can be taken offline once the CA has bootstrapped (x509_mgmt/ca.py).
    data_dir: str
    root_key_dir: str
    # Encrypts the CA keys on disk when set (empty: keys are plain PKCS#8, mode 0600).
    key_passphrase: str
    # The device manager's internal API (GET /internal/tenants/<tenant>/devices/<id>), asked with this process's
    # service identity (ONDAS_SERVICE_NAME / ONDAS_SERVICE_KEY).
    device_manager_url: str
    check_device: bool
    device_manager_timeout_seconds: float
    certificate_days: int
    # The CRL's nextUpdate is this far after its thisUpdate; it is regenerated when less than half is left.
    crl_valid_hours: float
    page_limit: int
    page_max_limit: int
    # dojot's certificate.external.minimumvaliditydays and certificate.external.ca.minimumvaliditydays.
    external_min_validity_days: int
    ca_min_validity_days: int
    # Trusted CAs per tenant (negative: no limit), dojot's certificate.external.ca.limit.
    trusted_ca_limit: int
    # Publish queued events (the outbox) from the API process, one active publisher per database.
    relay: bool
    relay_poll_seconds: float

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = env_str("X509_MGMT_DATA_DIR", ".data/x509")
        return cls(
            common=CommonSettings.from_env(),
            db_url=env_str("X509_MGMT_DB_URL"),
            http_port=env_int("X509_MGMT_HTTP_PORT", 8019),
            http_workers=env_int("X509_MGMT_HTTP_WORKERS", 2, minimum=1),
            worker_health_port=env_int("X509_MGMT_WORKER_HEALTH_PORT", 8020),
            db_max_connections=env_int("X509_MGMT_DB_MAX_CONNECTIONS", 10, minimum=1),
            data_dir=data_dir,
            root_key_dir=env_str("X509_MGMT_ROOT_KEY_DIR", f"{data_dir}/root"),
            key_passphrase=_optional("X509_MGMT_KEY_PASSPHRASE"),
            device_manager_url=env_str("X509_MGMT_DEVICE_MANAGER_URL", "http://127.0.0.1:8011"),
            check_device=env_choice("X509_MGMT_CHECK_DEVICE", ("on", "off"), "on") == "on",
            device_manager_timeout_seconds=max(env_float("X509_MGMT_DEVICE_MANAGER_TIMEOUT_SECONDS", 5.0), 0.1),
            certificate_days=env_int("X509_MGMT_CERTIFICATE_DAYS", 365, minimum=1),
            crl_valid_hours=max(env_float("X509_MGMT_CRL_VALID_HOURS", 168.0), 1.0),
            page_limit=env_int("X509_MGMT_PAGE_LIMIT", 25, minimum=1),
            page_max_limit=env_int("X509_MGMT_PAGE_MAX_LIMIT", 250, minimum=1),
            external_min_validity_days=env_int("X509_MGMT_EXTERNAL_MIN_VALIDITY_DAYS", 1, minimum=0),
            ca_min_validity_days=env_int("X509_MGMT_CA_MIN_VALIDITY_DAYS", 1, minimum=0),
            trusted_ca_limit=env_int("X509_MGMT_TRUSTED_CA_LIMIT", -1),
            relay=env_choice("X509_MGMT_RELAY", ("on", "off"), "on") == "on",
            relay_poll_seconds=max(env_float("X509_MGMT_RELAY_POLL_SECONDS", 1.0), 0.05),
        )


def _optional(name: str) -> str:
    """A setting that may be empty (env_str refuses an empty value without a default)."""
    try:
        return env_str(name)
    except ValueError:
        return ""
