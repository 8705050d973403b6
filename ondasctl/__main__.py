"""``python -m ondasctl up|down|status``: run the platform on this machine (see README)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ondasctl import certreq, platform
from ondasctl import config as config_mod
from ondasctl.config import DEFAULT_ADMIN_PASSWORD, Config
from ondasctl.ports import PortError
from ondasctl.procs import pid_alive, signal_group, tail


def say(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("ONDAS_DATA_DIR") or config_mod.ROOT / ".data").resolve()


def _read_state(data_dir: Path) -> dict[str, Any] | None:
    path = data_dir / "run" / "state.json"
    try:
        state: dict[str, Any] = json.loads(path.read_text())
        return state
    except (OSError, ValueError):
        return None


def _supervisor_pid(data_dir: Path) -> int | None:
    try:
        pid = int((data_dir / "run" / "supervisor.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _config_from_state(state: dict[str, Any]) -> Config:
    c = dict(state["config"])
    c["data_dir"] = Path(c["data_dir"])
    return Config(**c)


def summary(cfg: Config) -> dict[str, Any]:
    return {
        "gateway_url": f"http://{cfg.host}:{cfg.ports['gateway']}",
        "mqtt_host": cfg.host,
        "mqtt_port": cfg.ports["mqtt"],
        "mqtts_port": cfg.ports["mqtts"],
        "kafka_bootstrap": cfg.kafka_bootstrap,
        "postgres": cfg.postgres_url("postgres").split("@")[-1],
        "mongo_url": cfg.mongo_url,
        "redis_url": cfg.redis_display_url,
        "admin_user": cfg.admin_user,
        "admin_password_is_default": cfg.admin_password == DEFAULT_ADMIN_PASSWORD,
        "data_dir": str(cfg.data_dir),
        "logs_dir": str(cfg.logs),
        # What devices verify the TLS listeners with (x509_mgmt's chain, which signed the server certificate, and
        # the on-disk CA); certreq writes x509_mgmt's chain alone to ca/ca.pem, which verifies them too.
        "ca_file": str(cfg.data_dir / "tls" / "device-ca.pem"),
    }


def print_summary(cfg: Config) -> None:
    s = summary(cfg)
    password = "'admin' (the default: change it)" if s["admin_password_is_default"] else "from ONDAS_ADMIN_PASSWORD"
    print(
        f"""
Ondas is up.
  Gateway (REST APIs)  {s["gateway_url"]}
  MQTT (devices)       {s["mqtt_host"]}:{s["mqtt_port"]}  (unsecured mode: username <tenant>:<device-id>, loopback only)
  MQTTS (mutual TLS)   {s["mqtt_host"]}:{s["mqtts_port"]}  (CA: {s["ca_file"]})
  Kafka bootstrap      {s["kafka_bootstrap"]}
  Admin login          user '{s["admin_user"]}', password {password}
  Data and logs        {s["data_dir"]}  (logs in {s["logs_dir"]})

  Get a token:  curl -s -X POST {s["gateway_url"]}/auth -H 'Content-Type: application/json' \\
                  -d '{{"username": "admin", "passwd": "admin"}}' | jq -r .jwt
  Status:       make status      Stop: make down""",
        flush=True,
    )


def cmd_up(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    pid = _supervisor_pid(data_dir)
    state = _read_state(data_dir)
    if pid and state and state.get("phase") in ("starting", "ready"):
        say(f"the platform is already running (supervisor pid {pid}); nothing to do")
        cfg = _config_from_state(state)
        if state.get("phase") == "starting":
            return _wait_up(data_dir, lambda: pid_alive(pid), cfg, args.timeout)
        print_summary(cfg)
        return 0
    try:
        cfg = config_mod.load(data_dir)
    except PortError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in cfg.notes:
        say(note)
    for d in (cfg.data_dir, cfg.logs, cfg.run):
        d.mkdir(parents=True, exist_ok=True)
    cfg.data_dir.chmod(0o755)
    config_mod.save_ports(cfg)
    (cfg.run / "config.json").write_text(cfg.to_json())
    (cfg.run / "state.json").unlink(missing_ok=True)
    say(f"data directory {cfg.data_dir}")
    log_path = cfg.logs / "supervisor.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ondasctl", "--data-dir", str(cfg.data_dir), "supervise"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=config_mod.ROOT,
        )
    say(f"supervisor started (pid {proc.pid}, log {log_path})")
    return _wait_up(data_dir, lambda: proc.poll() is None, cfg, args.timeout)


def _wait_up(data_dir: Path, alive: Callable[[], bool], cfg: Config, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    reported: set[str] = set()
    while time.monotonic() < deadline:
        state = _read_state(data_dir) or {}
        for p in state.get("processes", []):
            if p["ready"] and p["name"] not in reported:
                reported.add(p["name"])
                where = f" on {cfg.host}:{p['port']}" if p.get("port") else ""
                say(f"{p['name']:<22} ready{where} (pid {p['pid']})")
        if state.get("phase") == "ready":
            print_summary(cfg)
            return 0
        if state.get("phase") == "failed" or not alive():
            print(f"error: the platform did not start: {state.get('error')}", file=sys.stderr)
            print(tail(cfg.logs / "supervisor.log", 20), file=sys.stderr)
            return 1
        time.sleep(0.2)
    print(f"error: the platform was not ready after {timeout:.0f}s; see {cfg.logs}", file=sys.stderr)
    return 1


def cmd_down(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    state = _read_state(data_dir) or {}
    pid = _supervisor_pid(data_dir)
    if pid:
        say(f"stopping the supervisor (pid {pid}) and everything it started")
        os.kill(pid, 15)
        deadline = time.monotonic() + 90
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if pid_alive(pid):
            say(f"supervisor {pid} did not stop in time; killing it")
            signal_group(pid, 9)
    # Anything recorded that still runs (e.g. after a supervisor crash) is stopped by its PID.
    leftovers = [p for p in state.get("processes", []) if p.get("pid") and pid_alive(p["pid"])]
    for p in leftovers:
        say(f"stopping leftover {p['name']} (pid {p['pid']})")
        signal_group(p["pid"], 15)
    deadline = time.monotonic() + 15
    while any(pid_alive(p["pid"]) for p in leftovers) and time.monotonic() < deadline:
        time.sleep(0.2)
    for p in leftovers:
        if pid_alive(p["pid"]):
            signal_group(p["pid"], 9)
    if not pid and not leftovers:
        say("the platform is not running; nothing to stop")
    else:
        say("stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    data_dir = _data_dir(args)
    state = _read_state(data_dir)
    pid = _supervisor_pid(data_dir)
    if not state or not pid:
        if args.format == "json":
            print(json.dumps({"running": False, "processes": []}))
        else:
            print("The platform is not running (make up starts it).")
        return 1
    cfg = _config_from_state(state)
    specs = {s.name: s for s in platform.all_specs(cfg)}
    rows = []
    for p in state.get("processes", []):
        alive = bool(p.get("pid")) and pid_alive(p["pid"])
        spec = specs.get(p["name"])
        try:
            healthy = alive and spec is not None and bool(spec.ready())
        except Exception:  # noqa: BLE001  (a failing probe means unhealthy)
            healthy = False
        rows.append({**p, "alive": alive, "healthy": healthy, "state": "healthy" if healthy else "unhealthy"})
    all_ok = state.get("phase") == "ready" and all(r["healthy"] for r in rows)
    if args.format == "json":
        out = {
            "running": True,
            "phase": state.get("phase"),
            "healthy": all_ok,
            "supervisor_pid": pid,
            **summary(cfg),
            "processes": rows,
        }
        print(json.dumps(out, indent=2))
    else:
        print(f"Ondas: {'healthy' if all_ok else 'NOT healthy'} (phase {state.get('phase')}, supervisor pid {pid})")
        print(f"{'PROCESS':<22} {'STATE':<10} {'PID':>8} {'PORT':>6} {'RESTARTS':>8}  LOG")
        for r in rows:
            print(
                f"{r['name']:<22} {r['state']:<10} {r['pid'] or '-':>8} {r.get('port') or '-':>6} "
                f"{r['restarts']:>8}  {r['log']}"
            )
        s = summary(cfg)
        print(f"\nGateway {s['gateway_url']}   MQTT {s['mqtt_host']}:{s['mqtt_port']}   MQTTS {s['mqtts_port']}")
        print(f"Kafka {s['kafka_bootstrap']}   admin user '{s['admin_user']}'")
    return 0 if all_ok else 1


def cmd_device_cert(args: argparse.Namespace) -> int:
    """Issue a device client certificate signed by the on-disk platform CA, directly from its files (kept for
    scripts and tests; devices get certificates from x509_mgmt: ``certreq``)."""
    from ondas.ca import issue_device_cert
    from ondas.errors import Invalid

    pki_dir = _data_dir(args) / "pki"
    try:
        issued = issue_device_cert(
            pki_dir, args.tenant, args.device_id, Path(args.out).resolve() if args.out else None, args.days
        )
    except Invalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"certificate  {issued.cert}")
    print(f"private key  {issued.key}")
    print(f"CA           {issued.ca}")
    print(f"identity     {issued.cn}  (serial {issued.serial}, valid until {issued.not_after})")
    print(
        f"\nConnect:  mosquitto_pub -h localhost -p <mqtts port> --cafile {issued.ca} --cert {issued.cert} "
        f"--key {issued.key} -t '{issued.cn}/attrs' -m '{{\"temperature\": 21}}'"
    )
    return 0


def cmd_supervise(args: argparse.Namespace) -> int:
    from ondasctl.supervisor import run

    data_dir = _data_dir(args)
    c = json.loads((data_dir / "run" / "config.json").read_text())
    c["data_dir"] = Path(c["data_dir"])
    return run(Config(**c))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ondasctl", description=__doc__)
    parser.add_argument("--data-dir", help="state directory (default: ONDAS_DATA_DIR or .data)")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the platform (harmless when it already runs)")
    up.add_argument("--timeout", type=float, default=180)
    sub.add_parser("down", help="stop everything 'up' started, by PID")
    st = sub.add_parser("status", help="show every process and its health")
    st.add_argument("--format", choices=["table", "json"], default="table")
    sub.add_parser("supervise", help=argparse.SUPPRESS)
    dc = sub.add_parser("device-cert", help="issue a device client certificate (CN <tenant>:<device-id>)")
    dc.add_argument("tenant")
    dc.add_argument("device_id", metavar="device-id")
    dc.add_argument("--out", help="directory for cert.pem and key.pem (default: <data>/pki/devices/<tenant>/<id>)")
    dc.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    certreq.add_parser(sub)
    args = parser.parse_args(argv)
    handlers = {
        "up": cmd_up,
        "down": cmd_down,
        "status": cmd_status,
        "supervise": cmd_supervise,
        "device-cert": cmd_device_cert,
        "certreq": certreq.cmd_certreq,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
