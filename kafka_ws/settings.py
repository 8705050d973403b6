"""kafka_ws settings, read from the environment here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

from ondas.settings import CommonSettings, SettingsError, env_float, env_int, env_str

#: The default ticket secret is for development only; every deployment sets KAFKA_WS_TICKET_SECRET, the same for
#: every kafka_ws process (a ticket issued by one process is redeemed by any other).
DEV_TICKET_SECRET = "ondas-kafka-ws-development-secret"  # noqa: S105  (development default, documented)


@dataclass(frozen=True)
class KafkaWsSettings:
    common: CommonSettings
    redis_url: str = "redis://127.0.0.1:6379/1"
    http_port: int = 8023
    ticket_secret: str = DEV_TICKET_SECRET
    # Seconds a ticket (and a socket.io token) may wait in Redis before it is used.
    ticket_ttl_seconds: int = 60
    # Longest life of a websocket connection in seconds (closed with 4408 then); -1: no limit.
    max_lifetime_seconds: float = 7200.0
    # Messages waiting for one connection; a connection with a full queue is closed with 4429 (slow client).
    queue_size: int = 1000
    # Frames waiting in engine.io's queue of one socket.io client before it is disconnected as slow.
    socketio_max_backlog: int = 1000
    # Kafka messages handed to the fan-out at once (a connection's queue should hold a few batches).
    kafka_batch_size: int = 500
    # Seconds a topic stays read after its last listener left (a client that reconnects finds it read still).
    linger_seconds: float = 30.0
    # Seconds an aiohttp shutdown waits for open connections after they were told to close.
    shutdown_seconds: float = 5.0

    @classmethod
    def from_env(cls) -> KafkaWsSettings:
        lifetime = env_float("KAFKA_WS_CONNECTION_MAX_LIFETIME_SECONDS", 7200.0)
        if lifetime <= 0 and lifetime != -1:
            raise SettingsError("setting KAFKA_WS_CONNECTION_MAX_LIFETIME_SECONDS must be > 0, or -1 for no limit")
        return cls(
            common=CommonSettings.from_env(),
            redis_url=env_str("KAFKA_WS_REDIS_URL", "redis://127.0.0.1:6379/1"),
            http_port=env_int("KAFKA_WS_HTTP_PORT", 8023, minimum=0),
            ticket_secret=env_str("KAFKA_WS_TICKET_SECRET", DEV_TICKET_SECRET),
            ticket_ttl_seconds=env_int("KAFKA_WS_TICKET_TTL_SECONDS", 60, minimum=1),
            max_lifetime_seconds=lifetime,
            queue_size=env_int("KAFKA_WS_QUEUE_SIZE", 1000, minimum=1),
            socketio_max_backlog=env_int("KAFKA_WS_SOCKETIO_MAX_BACKLOG", 1000, minimum=1),
            kafka_batch_size=env_int("KAFKA_WS_KAFKA_BATCH_SIZE", 500, minimum=1),
            linger_seconds=env_float("KAFKA_WS_LINGER_SECONDS", 30.0),
            shutdown_seconds=env_float("KAFKA_WS_SHUTDOWN_SECONDS", 5.0),
        )
