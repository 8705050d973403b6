"""Everything ``make up`` needs to know, from the environment, in one place.

Settings (all optional):
- ``ONDAS_DATA_DIR``: where all state lives (default ``.data`` in the checkout).
- ``ONDAS_<COMPONENT>_PORT``: the port of a component (see ``PORTS``); a default port that is taken is
  replaced by the next free one, an explicit port that is taken is an error naming the setting.
- ``ONDAS_POSTGRES_URL``, ``ONDAS_REDIS_URL``, ``ONDAS_MONGO_URL``, ``ONDAS_KAFKA_BOOTSTRAP``: use servers
  that already run instead of starting our own.
- ``ONDAS_ADMIN_PASSWORD``: the seeded admin's password (default ``admin``, as in dojot's tutorial).
- ``ONDAS_LOG_LEVEL``: log level of every service.
- ``ONDAS_MQTT_MODE``: ``unsecured`` (default; dojot's mode, the MQTT username is the identity and no password
  is asked, allowed because the device listener is bound to loopback) or ``credentials`` (each device logs in
  with its own password, kept by Mosquitto's dynamic security plugin; removed devices are kicked and refused).
- ``ONDAS_MQTT_LEGACY_TOPICS``: ``on`` also takes dojot's Mosca-era topics on the plain listener, publish
  ``/<tenant>/<device-id>/attrs`` and receive ``/<tenant>/<device-id>/config`` (default ``off``). Unsecured mode
  only: the topic names the device and nothing binds it to the connection (as in Mosca's non-strict mode).
- ``ONDAS_GATEWAY_RATE_LIMIT``: replaces the limit of every ``rate-limiting`` plugin in gateway/kong.yml
  (default: the file's own, 5 logins a minute per client); test suites that log in often raise it.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ondasctl.ports import PortChoice, choose

# dojot's tutorial logs in with admin/admin; auth warns at every start while it is unchanged.
DEFAULT_ADMIN_PASSWORD = "admin"  # noqa: S105
ROOT = Path(__file__).resolve().parent.parent

# component -> (setting, default port)
PORTS: dict[str, tuple[str, int]] = {
    "gateway": ("ONDAS_GATEWAY_PORT", 8000),
    "mqtt": ("ONDAS_MQTT_PORT", 1883),
    "mqtts": ("ONDAS_MQTTS_PORT", 8883),
    "mqtt_internal": ("ONDAS_MQTT_INTERNAL_PORT", 11883),
    "kafka": ("ONDAS_KAFKA_PORT", 9092),
    "postgres": ("ONDAS_POSTGRES_PORT", 5432),
    "redis": ("ONDAS_REDIS_PORT", 6379),
    "mongo": ("ONDAS_MONGO_PORT", 27017),
    "auth": ("ONDAS_AUTH_PORT", 8010),
    "device_manager": ("ONDAS_DEVICE_MANAGER_PORT", 8011),
    "device_manager_relay": ("ONDAS_DEVICE_MANAGER_RELAY_PORT", 8012),
    "history": ("ONDAS_HISTORY_PORT", 8013),
    "persister": ("ONDAS_PERSISTER_PORT", 8014),
    "mqtt_agent": ("ONDAS_MQTT_AGENT_PORT", 8015),
    "mqtt_agent_api": ("ONDAS_MQTT_AGENT_API_PORT", 8016),
    "http_agent": ("ONDAS_HTTP_AGENT_PORT", 8017),
    "http_agent_tls": ("ONDAS_HTTP_AGENT_TLS_PORT", 8018),
    "x509_mgmt": ("ONDAS_X509_MGMT_PORT", 8019),
    "x509_mgmt_worker": ("ONDAS_X509_MGMT_WORKER_PORT", 8020),
    "flowbroker": ("ONDAS_FLOWBROKER_PORT", 8021),
    "flowbroker_worker": ("ONDAS_FLOWBROKER_WORKER_PORT", 8022),
    "kafka_ws": ("ONDAS_KAFKA_WS_PORT", 8023),
}

MQTT_MODES = ("unsecured", "credentials")

EXTERNAL = {
    "postgres": "ONDAS_POSTGRES_URL",
    "redis": "ONDAS_REDIS_URL",
    "mongo": "ONDAS_MONGO_URL",
    "kafka": "ONDAS_KAFKA_BOOTSTRAP",
}


# Generated secrets (files under <data dir>/secrets, mode 0600): the embedded Redis's password, and the root the
# agents derive the key that binds each stored device password hash to its tenant and device.
REDIS_SECRET = "redis"  # noqa: S105  (a file name)
DEVICE_CREDENTIALS_SECRET = "device-credentials"  # noqa: S105  (a file name)


def redact_url(url: str) -> str:
    """``url`` with the password of its user part (``scheme://user:password@host``) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}"


@dataclass
class Config:
    data_dir: Path
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=dict)
    external: dict[str, str] = field(default_factory=dict)
    admin_user: str = "admin"
    admin_password: str = DEFAULT_ADMIN_PASSWORD
    log_level: str = "INFO"
    gateway_rate_limit: int | None = None
    mqtt_mode: str = "unsecured"
    mqtt_legacy_topics: bool = False
    notes: list[str] = field(default_factory=list)

    # -- paths ---------------------------------------------------------------------------------------------
    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run(self) -> Path:
        return self.data_dir / "run"

    @property
    def state_file(self) -> Path:
        return self.run / "state.json"

    @property
    def supervisor_pid_file(self) -> Path:
        return self.run / "supervisor.pid"

    @property
    def keys(self) -> Path:
        return self.data_dir / "keys"

    def secret(self, name: str, nbytes: int = 18) -> str:
        """A generated secret kept in the data directory (created once)."""
        path = self.data_dir / "secrets" / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Written with mode 0600 from the start (never readable by others, not even for a moment), then linked
            # into place whole: a concurrent reader sees no file or the whole secret, and the first writer wins.
            tmp = path.with_name(f".{name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(nbytes))
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # made meanwhile by another process: use theirs
            except OSError:  # a file system without hard links
                if not path.exists():
                    os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            path.chmod(0o600)
        return path.read_text().strip()

    # -- derived URLs --------------------------------------------------------------------------------------
    def postgres_url(self, database: str) -> str:
        base = self.external.get("postgres")
        if base:
            return base.rsplit("/", 1)[0] + "/" + database
        return f"postgresql://ondas:{self.secret('postgres')}@{self.host}:{self.ports['postgres']}/{database}"

    @property
    def redis_password(self) -> str:
        """The password of the embedded Redis (``requirepass``), generated once into the data directory."""
        return self.secret(REDIS_SECRET, 24)

    @property
    def redis_url(self) -> str:
        """The URL services connect with: the external one as given, or the embedded Redis with its password."""
        return self.external.get("redis") or f"redis://:{self.redis_password}@{self.host}:{self.ports['redis']}/0"

    @property
    def redis_display_url(self) -> str:
        """:attr:`redis_url` without its password, for what ``make up`` and ``make status`` print."""
        return redact_url(self.redis_url)

    @property
    def mongo_url(self) -> str:
        return self.external.get("mongo") or f"mongodb://{self.host}:{self.ports['mongo']}/"

    @property
    def kafka_bootstrap(self) -> str:
        return self.external.get("kafka") or f"{self.host}:{self.ports['kafka']}"

    def url(self, component: str) -> str:
        return f"http://{self.host}:{self.ports[component]}"

    def to_json(self) -> str:
        d = asdict(self)
        d["data_dir"] = str(self.data_dir)
        return json.dumps(d, indent=2)


def load(data_dir: Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Build the configuration and choose ports (reusing the previous run's choices where possible)."""
    env = dict(os.environ if env is None else env)
    legacy_topics = env.get("ONDAS_MQTT_LEGACY_TOPICS") or "off"
    data_dir = (data_dir or Path(env.get("ONDAS_DATA_DIR") or ROOT / ".data")).resolve()
    cfg = Config(
        data_dir=data_dir,
        admin_password=env.get("ONDAS_ADMIN_PASSWORD") or DEFAULT_ADMIN_PASSWORD,
        log_level=env.get("ONDAS_LOG_LEVEL") or "INFO",
        gateway_rate_limit=int(env["ONDAS_GATEWAY_RATE_LIMIT"]) if env.get("ONDAS_GATEWAY_RATE_LIMIT") else None,
        external={k: env[v] for k, v in EXTERNAL.items() if env.get(v)},
        mqtt_mode=env.get("ONDAS_MQTT_MODE") or "unsecured",
        mqtt_legacy_topics=legacy_topics == "on",
    )
    if cfg.mqtt_mode not in MQTT_MODES:
        raise ValueError(f"ONDAS_MQTT_MODE must be one of {', '.join(MQTT_MODES)}, got {cfg.mqtt_mode!r}")
    if legacy_topics not in ("on", "off"):
        raise ValueError(f"ONDAS_MQTT_LEGACY_TOPICS must be on or off, got {legacy_topics!r}")
    if cfg.mqtt_legacy_topics and cfg.mqtt_mode != "unsecured":
        raise ValueError(
            "ONDAS_MQTT_LEGACY_TOPICS=on needs ONDAS_MQTT_MODE=unsecured: a topic /<tenant>/<device-id>/attrs "
            "cannot be bound to a device's password login; devices with passwords use <tenant>:<device-id>/attrs"
        )
    previous: dict[str, int] = {}
    ports_file = data_dir / "run" / "ports.json"
    if ports_file.exists():
        previous = json.loads(ports_file.read_text())
    taken: set[int] = set()
    for name, (setting, default) in PORTS.items():
        if name in cfg.external:
            continue
        explicit = int(env[setting]) if env.get(setting) else None
        choice: PortChoice = choose(name, setting, previous.get(name, default), explicit, taken)
        if choice.note and choice.port != previous.get(name):
            cfg.notes.append(choice.note)
        cfg.ports[name] = choice.port
        taken.add(choice.port)
    return cfg


def save_ports(cfg: Config) -> None:
    cfg.run.mkdir(parents=True, exist_ok=True)
    (cfg.run / "ports.json").write_text(json.dumps(cfg.ports, indent=2))
