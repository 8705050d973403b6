"""The whole platform as an ordered list of process specs: infrastructure first, then services, then the
gateway. One place decides what runs, with which settings."""

from __future__ import annotations

import sys
from pathlib import Path

import requests

from ondas.service_identity import derive_service_key
from ondasctl import infra
from ondasctl.config import DEVICE_CREDENTIALS_SECRET, Config
from ondasctl.pki import device_tls_files, x509_data_dir
from ondasctl.procs import ProcSpec

DATABASES = ["ondas_auth", "ondas_device_manager", "x509_mgmt", "flowbroker"]
# The secret (in the data directory) that only auth holds; every other service gets a key derived from it.
SERVICE_IDENTITY_ROOT = "service-master"

# Host name of Kong service URLs (gateway/kong.yml) -> component whose port serves it locally.
GATEWAY_UPSTREAMS = {
    "auth": "auth",
    "device-manager": "device_manager",
    "history": "history",
    "http-agent": "http_agent",
    "mqtt-agent": "mqtt_agent_api",
    "x509-identity-mgmt": "x509_mgmt",
    "kafka-ws": "kafka_ws",
    "flowbroker": "flowbroker",
}


def infra_specs(cfg: Config) -> list[ProcSpec]:
    specs = []
    if "kafka" not in cfg.external:
        specs.append(infra.kafka_spec(cfg))
    if "postgres" not in cfg.external:
        specs.append(infra.postgres_spec(cfg))
    if "redis" not in cfg.external:
        specs.append(infra.redis_spec(cfg))
    if "mongo" not in cfg.external:
        specs.append(infra.mongo_spec(cfg))
    specs.append(infra.mosquitto_spec(cfg))
    return specs


def _http_ready(url: str, ca: Path | None = None) -> bool:
    """``ca``: an https URL, whose server certificate that CA signed."""
    return requests.get(url, timeout=2, verify=str(ca) if ca else True).status_code == 200


def _service(
    cfg: Config, name: str, module: list[str], port_key: str, env: dict[str, str], ca: Path | None = None
) -> ProcSpec:
    """``ca``: the service serves HTTPS (its health routes too), with a server certificate that CA signed."""
    _, public = cfg.keys / "jwt-private.pem", cfg.keys / "jwt-public.pem"
    url = cfg.url(port_key).replace("http://", "https://", 1) if ca else cfg.url(port_key)
    common = {
        "ONDAS_KAFKA_BOOTSTRAP": cfg.kafka_bootstrap,
        "ONDAS_AUTH_URL": cfg.url("auth"),
        "ONDAS_JWT_PUBLIC_KEY_FILE": str(public),
        "ONDAS_LOG_LEVEL": cfg.log_level,
        "ONDAS_BIND_HOST": cfg.host,
        "PYTHONUNBUFFERED": "1",
        # Its own identity for internal calls (auth's /admin routes); see ondas.service_identity.
        "ONDAS_SERVICE_NAME": name,
        "ONDAS_SERVICE_KEY": derive_service_key(cfg.secret(SERVICE_IDENTITY_ROOT), name),
        # Every token and service identity checked by auth, also on direct calls to a service's port (ondas.authn).
        "ONDAS_AUTHZ": "full",
    }
    return ProcSpec(
        name=name,
        argv=[sys.executable, "-m", *module],
        log_file=cfg.logs / f"{name}.log",
        ready=lambda: _http_ready(url + "/health/ready", ca),
        kind="service",
        env={**common, **env},
        health_url=url + "/health/ready",
        port=cfg.ports[port_key],
    )


def service_specs(cfg: Config) -> list[ProcSpec]:
    p = cfg.ports
    tls = device_tls_files(cfg.data_dir)
    x509_env = {
        "X509_MGMT_DB_URL": cfg.postgres_url("x509_mgmt"),
        "X509_MGMT_HTTP_PORT": str(p["x509_mgmt"]),
        "X509_MGMT_WORKER_HEALTH_PORT": str(p["x509_mgmt_worker"]),
        # The CA (bootstrapped by make up before Mosquitto starts: ondasctl.pki.prepare_device_tls) and crl.pem.
        "X509_MGMT_DATA_DIR": str(x509_data_dir(cfg.data_dir)),
        "X509_MGMT_DEVICE_MANAGER_URL": cfg.url("device_manager"),
    }
    flow_env = {
        "FLOWBROKER_DB_URL": cfg.postgres_url("flowbroker"),
        "FLOWBROKER_REDIS_URL": cfg.redis_url,
        "FLOWBROKER_HTTP_PORT": str(p["flowbroker"]),
        "FLOWBROKER_WORKER_HEALTH_PORT": str(p["flowbroker_worker"]),
        # Flows may name only the tenant's own devices (checked on save); the worker learns devices from it too.
        "FLOWBROKER_DEVICE_MANAGER_URL": cfg.url("device_manager"),
    }
    return [
        _service(
            cfg,
            "auth",
            ["auth"],
            "auth",
            {
                "AUTH_HTTP_PORT": str(p["auth"]),
                "AUTH_DB_URL": cfg.postgres_url("ondas_auth"),
                "AUTH_JWT_PRIVATE_KEY_FILE": str(cfg.keys / "jwt-private.pem"),
                "AUTH_ADMIN_PASSWORD": cfg.admin_password,
                "AUTH_REDIS_URL": cfg.redis_url,
                "AUTH_SERVICE_MASTER_SECRET": cfg.secret(SERVICE_IDENTITY_ROOT),
            },
        ),
        _service(
            cfg,
            "device-manager",
            ["device_manager", "api"],
            "device_manager",
            {
                "DEVICE_MANAGER_HTTP_PORT": str(p["device_manager"]),
                "DEVICE_MANAGER_DB_URL": cfg.postgres_url("ondas_device_manager"),
            },
        ),
        _service(
            cfg,
            "device-manager-relay",
            ["device_manager", "relay"],
            "device_manager_relay",
            {
                "DEVICE_MANAGER_RELAY_HEALTH_PORT": str(p["device_manager_relay"]),
                "DEVICE_MANAGER_DB_URL": cfg.postgres_url("ondas_device_manager"),
            },
        ),
        # The device certificate authority (dojot's x509-identity-mgmt API, behind the gateway at /x509/v1): the API
        # with its outbox relay (which also keeps <data>/x509/crl.pem current), and the worker (removed devices,
        # deleted tenants).
        _service(cfg, "x509-mgmt", ["x509_mgmt", "api"], "x509_mgmt", x509_env),
        _service(cfg, "x509-mgmt-worker", ["x509_mgmt", "worker"], "x509_mgmt_worker", x509_env),
        _service(
            cfg,
            "persister",
            ["persister"],
            "persister",
            {"PERSISTER_HEALTH_PORT": str(p["persister"]), "PERSISTER_MONGO_URL": cfg.mongo_url},
        ),
        _service(
            cfg,
            "history",
            ["history"],
            "history",
            {"HISTORY_HTTP_PORT": str(p["history"]), "HISTORY_MONGO_URL": cfg.mongo_url},
        ),
        # Real-time data: Kafka WS (tickets, websockets) and the data broker's socket.io stream, one process. Its
        # tickets live in Redis (single use), signed with a secret of the data directory.
        _service(
            cfg,
            "kafka-ws",
            ["kafka_ws"],
            "kafka_ws",
            {
                "KAFKA_WS_HTTP_PORT": str(p["kafka_ws"]),
                "KAFKA_WS_REDIS_URL": cfg.redis_url,
                "KAFKA_WS_TICKET_SECRET": cfg.secret("kafka-ws-ticket"),
            },
        ),
        # The flow engine (dojot's flowbroker, behind the gateway at /flows): the REST API and the worker group
        # that runs every enabled flow on its tenant's device data and device events.
        _service(cfg, "flowbroker", ["flowbroker", "api"], "flowbroker", flow_env),
        _service(cfg, "flowbroker-worker", ["flowbroker", "worker"], "flowbroker_worker", flow_env),
        _service(
            cfg,
            "mqtt-agent",
            ["agents.mqtt"],
            "mqtt_agent",
            {
                "MQTT_AGENT_HEALTH_PORT": str(p["mqtt_agent"]),
                "MQTT_AGENT_BROKER_HOST": cfg.host,
                "MQTT_AGENT_BROKER_PORT": str(p["mqtt_internal"]),
                "MQTT_AGENT_BROKER_USERNAME": infra.MQTT_AGENT_USER,
                "MQTT_AGENT_BROKER_PASSWORD": cfg.secret("mqtt-agent"),
                "MQTT_AGENT_DEVICE_MANAGER_URL": cfg.url("device_manager"),
                # The credentials API, in both modes: device passwords are stored hashed in Redis for every agent
                # (the HTTP agent verifies them); in credentials mode the broker's plugin gets them too.
                "MQTT_AGENT_API_PORT": str(p["mqtt_agent_api"]),
                "MQTT_AGENT_REDIS_URL": cfg.redis_url,
                # Binds each stored password hash to its tenant and device (agents.core.credentials_redis).
                "MQTT_AGENT_CREDENTIALS_KEY": cfg.secret(DEVICE_CREDENTIALS_SECRET, 32),
                # The dynamic security plugin: on the device listener in credentials mode (device passwords), on
                # the internal listener in unsecured mode (there only to end a removed device's sessions).
                "MQTT_AGENT_DYNSEC_USERNAME": infra.MQTT_DYNSEC_ADMIN,
                "MQTT_AGENT_DYNSEC_PASSWORD": cfg.secret("mqtt-dynsec"),
                **(
                    {"MQTT_AGENT_DYNSEC_PORT": str(p["mqtt"])}
                    if cfg.mqtt_mode == "credentials"
                    else {"MQTT_AGENT_DYNSEC_PORT": str(p["mqtt_internal"]), "MQTT_AGENT_DYNSEC_PASSWORDS": "off"}
                ),
                # A removed device's certificates are revoked (the on-disk platform CA's CRL); x509_mgmt revokes its
                # own. The agent keeps the combined CRL of both (what Mosquitto and the HTTP agent read) current,
                # sends Mosquitto SIGHUP, and ends the sessions of identities whose certificate x509_mgmt revoked.
                "MQTT_AGENT_PKI_DIR": str(cfg.data_dir / "pki"),
                "MQTT_AGENT_X509_CRL_FILE": str(tls["x509_crl"]),
                "MQTT_AGENT_X509_TRUST_FILE": str(tls["x509_trust"]),
                "MQTT_AGENT_DEVICE_CRL_FILE": str(tls["crl"]),
                "MQTT_AGENT_LEGACY_TOPICS": "on" if cfg.mqtt_legacy_topics else "off",
                "MQTT_AGENT_BROKER_PID_FILE": str(infra.mosquitto_pid_file(cfg)),
            },
        ),
        _service(
            cfg,
            "http-agent",
            ["agents.http"],
            "http_agent",
            {
                "HTTP_AGENT_HTTP_PORT": str(p["http_agent"]),
                "HTTP_AGENT_DEVICE_MANAGER_URL": cfg.url("device_manager"),
                "HTTP_AGENT_REDIS_URL": cfg.redis_url,
                "HTTP_AGENT_CREDENTIALS_KEY": cfg.secret(DEVICE_CREDENTIALS_SECRET, 32),
            },
        ),
        # The same agent on its TLS listener: devices connect directly with a certificate of x509_mgmt's CA or of
        # the on-disk CA (or Basic credentials under TLS); Mosquitto's server certificate, CA bundle and combined
        # CRL (ondasctl.pki.prepare_device_tls), re-read when the MQTT agent rewrites it.
        _service(
            cfg,
            "http-agent-tls",
            ["agents.http", "tls"],
            "http_agent_tls",
            {
                "HTTP_AGENT_HTTPS_PORT": str(p["http_agent_tls"]),
                "HTTP_AGENT_DEVICE_MANAGER_URL": cfg.url("device_manager"),
                "HTTP_AGENT_REDIS_URL": cfg.redis_url,
                "HTTP_AGENT_CREDENTIALS_KEY": cfg.secret(DEVICE_CREDENTIALS_SECRET, 32),
                "HTTP_AGENT_TLS_CERT": str(tls["cert"]),
                "HTTP_AGENT_TLS_KEY": str(tls["key"]),
                "HTTP_AGENT_TLS_CA": str(tls["ca"]),
                "HTTP_AGENT_TLS_CRL": str(tls["crl"]),
                "HTTP_AGENT_TLS_CA_DIR": str(tls["x509_trusted_dir"]),
                "HTTP_AGENT_TLS_TRUST_FILE": str(tls["x509_trust"]),
            },
            ca=tls["ca"],
        ),
    ]


def gateway_spec(cfg: Config) -> ProcSpec:
    return infra.gateway_spec(cfg, {svc: cfg.ports[comp] for svc, comp in GATEWAY_UPSTREAMS.items()})


def all_specs(cfg: Config) -> list[ProcSpec]:
    return [*infra_specs(cfg), *service_specs(cfg), gateway_spec(cfg)]
