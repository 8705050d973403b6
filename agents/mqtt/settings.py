"""Settings of the MQTT agent, read from the environment in this one place."""

from __future__ import annotations

from dataclasses import dataclass

from ondas.settings import CommonSettings, SettingsError, env_choice, env_int, env_str


@dataclass(frozen=True)
class Settings:
    common: CommonSettings
    health_port: int
    broker_host: str
    broker_port: int
    broker_username: str
    broker_password: str
    # A persistent MQTT session needs a stable client id, kept across restarts; each bridge process has its own
    # (a shared subscription may queue messages for an offline member until its session expires).
    client_id: str
    session_expiry_s: int
    # What a graceful stop (SIGTERM) does with the MQTT sessions. Off (the default): they are kept, so a restart
    # with the same client id gets what devices sent meanwhile and whatever was in flight (nothing lost across
    # restarts). On: leave for good (scale-down): unsubscribe, finish what was received, end the sessions; the
    # broker then sends the shared subscription's messages to the remaining members only.
    leave_on_stop: bool
    # How many unacknowledged QoS 1 messages the broker may have in flight to the agent at once. The protocol's
    # maximum by default: Mosquitto 2.0.11 was measured to deliver a publisher's messages out of order to a
    # subscriber whose window is full (a message arriving as a slot frees overtakes the queued ones: 15,314 of
    # 40,000 messages with a window of 200, none with 65,535), so the window must never fill.
    receive_maximum: int
    device_manager_url: str
    # The Kafka consumer group of the device-events consumer that acts on events (configure publishes, sessions
    # ended on removal or disable), shared by the agent processes of one platform: each event is acted on by one
    # of them. Each process also feeds its own device cache from a group of its own, ``<group>.cache.<client id>``.
    consumer_group: str
    # Device sharding of the MQTT -> Kafka bridge (bridge.py): ``shard_count`` processes, each forwarding the
    # devices whose crc32("<tenant>:<device>") % shard_count is its ``shard_index``.
    shard_index: int
    shard_count: int
    # dojot's Mosca-era topics too: forward /<tenant>/<device-id>/attrs, send configure on both config topics.
    # The broker must let devices use them (ondasctl: ONDAS_MQTT_LEGACY_TOPICS, unsecured mode only).
    legacy_topics: bool
    max_payload_bytes: int
    max_depth: int
    # Publish online/offline events from the broker's connection log. On exactly one agent process.
    liveness: bool
    # The listener whose dynamic security plugin the agent administers (0: none), and its administrator. In
    # credentials mode the device listener (device passwords); in unsecured mode the internal listener, used only
    # to end a removed device's live sessions.
    dynsec_port: int
    dynsec_username: str
    dynsec_password: str
    # Whether device passwords are set in that plugin (off: it only ends sessions; the unsecured mode's).
    dynsec_passwords: bool
    # The credentials API (0: off).
    api_port: int
    # Where device credentials are also stored, hashed, for the other agents (agents/core/credentials_redis.py);
    # empty: nowhere. With it, the credentials API is served in unsecured mode too (HTTP devices need passwords).
    redis_url: str
    # Certificate revocation (mutual-TLS devices, see revocation.py): the CA directory with the issued-certificate
    # records (empty: off), the CRL Mosquitto's mutual-TLS listener reads, and Mosquitto's pid file (SIGHUP).
    pki_dir: str
    crl_file: str
    broker_pid_file: str
    # x509_mgmt (the device certificate authority): its CRL file (empty: no such CA), and the file Mosquitto's and
    # the HTTP agent's TLS listeners read, the CRLs of both CAs one after the other (empty: the on-disk CA's CRL
    # is read directly). The agent rewrites that file whenever either CRL changes and sends Mosquitto SIGHUP,
    # and ends the sessions of each identity whose certificate x509_mgmt revoked (certificate.revoked events).
    x509_crl_file: str = ""
    # x509_mgmt's device-trust.tsv (the broker plugin's tenant CAs and registered external certificates): a
    # revoked external certificate's sessions are ended only once it is gone from that file (empty: no wait).
    x509_trust_file: str = ""
    device_crl_file: str = ""
    certificate_events: bool = True
    # The secret the agents share to bind each stored password hash to its tenant and device; required with
    # ``redis_url`` (``make up`` generates it; the same value as the HTTP agent's HTTP_AGENT_CREDENTIALS_KEY).
    credentials_key: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        settings = cls._read()
        if settings.shard_index >= settings.shard_count:
            raise SettingsError(
                f"setting MQTT_AGENT_SHARD must be below MQTT_AGENT_SHARDS ({settings.shard_count}), "
                f"got {settings.shard_index}"
            )
        if settings.redis_url and not settings.credentials_key:
            raise SettingsError(
                "setting MQTT_AGENT_CREDENTIALS_KEY is required with MQTT_AGENT_REDIS_URL: the secret that binds "
                "stored device password hashes to their devices (the HTTP agent's HTTP_AGENT_CREDENTIALS_KEY)"
            )
        return settings

    @classmethod
    def _read(cls) -> Settings:
        return cls(
            common=CommonSettings.from_env(),
            health_port=env_int("MQTT_AGENT_HEALTH_PORT", 8015),
            broker_host=env_str("MQTT_AGENT_BROKER_HOST", "127.0.0.1"),
            broker_port=env_int("MQTT_AGENT_BROKER_PORT", 11883),
            broker_username=env_str("MQTT_AGENT_BROKER_USERNAME", "ondas-agent"),
            broker_password=env_str("MQTT_AGENT_BROKER_PASSWORD"),
            client_id=env_str("MQTT_AGENT_BROKER_CLIENT_ID", "ondas-mqtt-agent-0"),
            session_expiry_s=env_int("MQTT_AGENT_BROKER_SESSION_EXPIRY", 300),
            leave_on_stop=env_choice("MQTT_AGENT_LEAVE_ON_STOP", ("on", "off"), "off") == "on",
            receive_maximum=env_int("MQTT_AGENT_BROKER_RECEIVE_MAXIMUM", 65535, minimum=1),
            device_manager_url=env_str("MQTT_AGENT_DEVICE_MANAGER_URL", "http://127.0.0.1:8011"),
            consumer_group=env_str("MQTT_AGENT_CONSUMER_GROUP", "mqtt-agent"),
            shard_index=env_int("MQTT_AGENT_SHARD", 0, minimum=0),
            shard_count=env_int("MQTT_AGENT_SHARDS", 1, minimum=1),
            legacy_topics=env_choice("MQTT_AGENT_LEGACY_TOPICS", ("on", "off"), "off") == "on",
            max_payload_bytes=env_int("MQTT_AGENT_MAX_PAYLOAD_BYTES", 65536),
            max_depth=env_int("MQTT_AGENT_MAX_JSON_DEPTH", 32),
            liveness=env_choice("MQTT_AGENT_LIVENESS", ("on", "off"), "on") == "on",
            dynsec_port=env_int("MQTT_AGENT_DYNSEC_PORT", 0, minimum=0),
            dynsec_username=env_str("MQTT_AGENT_DYNSEC_USERNAME", "ondas-dynsec"),
            dynsec_password=env_str("MQTT_AGENT_DYNSEC_PASSWORD", "-"),
            dynsec_passwords=env_choice("MQTT_AGENT_DYNSEC_PASSWORDS", ("on", "off"), "on") == "on",
            api_port=env_int("MQTT_AGENT_API_PORT", 0, minimum=0),
            redis_url=env_str("MQTT_AGENT_REDIS_URL", ""),
            pki_dir=env_str("MQTT_AGENT_PKI_DIR", ""),
            crl_file=env_str("MQTT_AGENT_CRL_FILE", ""),
            broker_pid_file=env_str("MQTT_AGENT_BROKER_PID_FILE", ""),
            x509_crl_file=env_str("MQTT_AGENT_X509_CRL_FILE", ""),
            x509_trust_file=env_str("MQTT_AGENT_X509_TRUST_FILE", ""),
            device_crl_file=env_str("MQTT_AGENT_DEVICE_CRL_FILE", ""),
            certificate_events=env_choice("MQTT_AGENT_CERTIFICATE_EVENTS", ("on", "off"), "on") == "on",
            credentials_key=env_str("MQTT_AGENT_CREDENTIALS_KEY", ""),
        )
