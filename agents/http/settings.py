"""Settings of the HTTP agent, read from the environment in this one place (prefix ``HTTP_AGENT_``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ondas.settings import CommonSettings, SettingsError, env_float, env_int, env_str


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    http_port: int
    # One gunicorn worker process (gthread) serves every request with this many threads; see app.py.
    threads: int
    device_manager_url: str
    # Where device credentials live (agents/core/credentials_redis.py) and where last-seen times are kept.
    redis_url: str
    # Request bodies larger than this are refused with 413 before they are read.
    max_body_bytes: int
    # The same depth limit as the MQTT agent's, applied to each message's ``data`` object.
    max_depth: int
    # create-many: at most this many messages in one request.
    max_batch: int
    # How long a request waits for Kafka to accept its messages before it is answered 503.
    publish_timeout_s: float
    # A device that sent nothing for this long is announced offline (reason ``timeout``); 0: no liveness.
    liveness_timeout_s: float
    # How long a verified password is remembered in the process (agents/core/credentials_redis.py).
    credentials_cache_s: float
    # The TLS listener (``python -m agents.http tls``): devices log in with a client certificate signed by
    # ``tls_ca`` (CN ``<tenant>:<device-id>``, checked against ``tls_crl``) or with Basic credentials over TLS.
    https_port: int
    tls_cert: str
    tls_key: str
    tls_ca: str
    tls_crl: str
    # Tenants' CAs (x509_mgmt): ``tls_ca_dir`` its hashed CA directory (searched at each handshake, so a CA
    # registered while the agent runs is trusted), ``tls_trust_file`` its device-trust.tsv (which tenant each CA
    # serves, which device each of their certificates was registered to). Empty: platform CAs only.
    tls_ca_dir: str = ""
    tls_trust_file: str = ""
    # The secret the agents share to bind each stored password hash to its tenant and device (required; ``make up``
    # generates it; the same value as the MQTT agent's MQTT_AGENT_CREDENTIALS_KEY).
    credentials_key: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        settings = cls(
            common=CommonSettings.from_env(),
            http_port=env_int("HTTP_AGENT_HTTP_PORT", 8017, minimum=1),
            threads=env_int("HTTP_AGENT_THREADS", 16, minimum=1),
            device_manager_url=env_str("HTTP_AGENT_DEVICE_MANAGER_URL", "http://127.0.0.1:8011"),
            redis_url=env_str("HTTP_AGENT_REDIS_URL", "redis://127.0.0.1:6379/0"),
            max_body_bytes=env_int("HTTP_AGENT_MAX_BODY_BYTES", 262144, minimum=64),
            max_depth=env_int("HTTP_AGENT_MAX_JSON_DEPTH", 32, minimum=1),
            max_batch=env_int("HTTP_AGENT_MAX_BATCH_ITEMS", 64, minimum=1),
            publish_timeout_s=env_float("HTTP_AGENT_PUBLISH_TIMEOUT", 10.0),
            liveness_timeout_s=env_float("HTTP_AGENT_LIVENESS_TIMEOUT", 300.0),
            credentials_cache_s=env_float("HTTP_AGENT_CREDENTIALS_CACHE_SECONDS", 10.0),
            https_port=env_int("HTTP_AGENT_HTTPS_PORT", 8018, minimum=1),
            tls_cert=env_str("HTTP_AGENT_TLS_CERT", ""),
            tls_key=env_str("HTTP_AGENT_TLS_KEY", ""),
            tls_ca=env_str("HTTP_AGENT_TLS_CA", ""),
            tls_crl=env_str("HTTP_AGENT_TLS_CRL", ""),
            tls_ca_dir=env_str("HTTP_AGENT_TLS_CA_DIR", ""),
            tls_trust_file=env_str("HTTP_AGENT_TLS_TRUST_FILE", ""),
            credentials_key=env_str("HTTP_AGENT_CREDENTIALS_KEY", ""),
        )
        if not settings.credentials_key:
            raise SettingsError(
                "setting HTTP_AGENT_CREDENTIALS_KEY is required: the secret that binds stored device password hashes "
                "to their devices (the MQTT agent's MQTT_AGENT_CREDENTIALS_KEY)"
            )
        for name, value in (
            ("HTTP_AGENT_PUBLISH_TIMEOUT", settings.publish_timeout_s),
            ("HTTP_AGENT_LIVENESS_TIMEOUT", settings.liveness_timeout_s),
            ("HTTP_AGENT_CREDENTIALS_CACHE_SECONDS", settings.credentials_cache_s),
        ):
            if value < 0:
                raise SettingsError(f"setting {name} must not be negative, got {value}")
        return settings

    def check_tls(self) -> None:
        """The TLS listener needs its certificate, key, the CA that signs device certificates and that CA's
        CRL: raises SettingsError naming each one missing."""
        for name, value in (
            ("HTTP_AGENT_TLS_CERT", self.tls_cert),
            ("HTTP_AGENT_TLS_KEY", self.tls_key),
            ("HTTP_AGENT_TLS_CA", self.tls_ca),
            ("HTTP_AGENT_TLS_CRL", self.tls_crl),
        ):
            if not value:
                raise SettingsError(f"the TLS listener needs setting {name}")
            if not Path(value).is_file():
                raise SettingsError(f"setting {name}: {value} is not a readable file")
