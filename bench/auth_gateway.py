"""Auth and gateway benchmark: PDP decisions per second with a warm cache, and requests per second through the
gateway against the same requests sent straight to the service (the gateway's overhead). Run on demand, never by
the test suite:

    .venv/bin/python -m bench.auth_gateway [--threads 8] [--duration 10] [--warmup 3]

It starts the whole platform the way a user does (``python -m ondasctl up``, in a throw-away data directory on
free ports, login rate limit raised), logs in as the seeded admin, measures everything in one run with
``--threads`` client threads (one ``requests.Session`` each, keep-alive), stops the platform with
``ondasctl down`` and prints one table:

- **PDP, warm cache**: the same permitted decision (admin, ``GET /device``) asked of auth over and over, as the
  gateway asks it (``/pdp/gateway``) and as dojot clients ask it (``POST /pdp``); against auth's cheapest route
  (``GET /health/live``), the HTTP ceiling of the same process with the same clients.
- **through the gateway**: ``GET /device?page_size=20`` (20 devices exist) through the gateway (route match,
  delegation to the PDP, proxying) against the same request with the same token straight to the device
  manager's port (which checks the token's signature itself). The ratio is the overhead; p50/p99 latencies too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from bench.common import Request, Result, load, print_table
from ondasctl.config import PORTS
from tests.servers import make_test_config

ROOT = Path(__file__).resolve().parents[1]
DEVICES = 20
LIST_PATH = "/device?page_size=20"


class Platform:
    """``ondasctl up`` in a throw-away data directory on free ports; ``stop`` runs ``ondasctl down``."""

    def __init__(self) -> None:
        cfg = make_test_config("ondas-bench-")
        self.data_dir = cfg.data_dir
        self.env = {
            **os.environ,
            "ONDAS_DATA_DIR": str(cfg.data_dir),
            "ONDAS_GATEWAY_RATE_LIMIT": "1000000",  # the bench logs in; the limit is not what is measured
            "ONDAS_LOG_LEVEL": "WARNING",
        }
        for name, (setting, _default) in PORTS.items():
            self.env[setting] = str(cfg.ports[name])
        self.status: dict[str, Any] = {}

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ondasctl", "--data-dir", str(self.data_dir), *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=check,
            timeout=240,
        )

    def start(self) -> None:
        up = self.ctl("up", check=False)
        if up.returncode != 0:
            raise RuntimeError(f"ondasctl up failed:\n{up.stdout}\n{up.stderr}")
        self.status = json.loads(self.ctl("status", "--format", "json").stdout)

    def stop(self) -> None:
        self.ctl("down", check=False)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def gateway(self) -> str:
        return str(self.status["gateway_url"])

    def service_url(self, process: str) -> str:
        for p in self.status["processes"]:
            if p["name"] == process and p.get("port"):
                return f"http://127.0.0.1:{p['port']}"
        raise RuntimeError(f"no port for {process!r} in ondasctl status")

    def token(self) -> str:
        body = {"username": self.status["admin_user"], "passwd": self.env.get("ONDAS_ADMIN_PASSWORD", "admin")}
        resp = requests.post(f"{self.gateway}/auth", json=body, timeout=30)
        resp.raise_for_status()
        return str(resp.json()["jwt"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds counted per measurement")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not counted before each measurement")
    args = parser.parse_args(argv)

    plat = Platform()
    try:
        print("starting the platform (ondasctl up) ...", file=sys.stderr)
        plat.start()
        token = plat.token()
        bearer = {"Authorization": f"Bearer {token}"}
        auth, device_manager, gateway = plat.service_url("auth"), plat.service_url("device-manager"), plat.gateway
        with requests.Session() as s:
            for i in range(DEVICES):
                resp = s.post(f"{gateway}/device", json={"label": f"bench-{i}", "templates": []}, headers=bearer)
                if resp.status_code not in (200, 201):
                    raise RuntimeError(f"POST /device: {resp.status_code} {resp.text[:300]}")

        run = {"threads": args.threads, "duration": args.duration, "warmup": args.warmup}
        cases = {
            "health": Request("GET", f"{auth}/health/live"),
            "pdp_gateway": Request(
                "GET",
                f"{auth}/pdp/gateway",
                {**bearer, "X-Original-Method": "GET", "X-Original-URI": "/device"},
            ),
            "pdp_dojot": Request("POST", f"{auth}/pdp", body={"action": "GET", "jwt": token, "resource": "/device"}),
            "via_gateway": Request("GET", f"{gateway}{LIST_PATH}", bearer),
            "direct": Request("GET", f"{device_manager}{LIST_PATH}", bearer),
        }
        # dojot's PDP answers 200 for deny too: make sure it is a permit before timing it.
        decision = requests.post(cases["pdp_dojot"].url, json=cases["pdp_dojot"].body, timeout=30).json()
        if decision.get("decision") != "permit":
            raise RuntimeError(f"POST /pdp did not permit the admin's GET /device: {decision}")
        results: dict[str, Result] = {}
        for name, req in cases.items():
            print(
                f"measuring {name} ({args.threads} threads, {args.warmup:g}s + {args.duration:g}s) ...", file=sys.stderr
            )
            results[name] = load(req, **run)
    finally:
        print("stopping the platform (ondasctl down) ...", file=sys.stderr)
        plat.stop()

    health, gw, direct = results["health"], results["via_gateway"], results["direct"]
    rows = [
        (
            "PDP GET /pdp/gateway, warm cache (decisions/s)",
            f"{results['pdp_gateway'].rate:,.0f}",
            f"{health.rate:,.0f} (auth GET /health/live)",
            f"{health.rate / results['pdp_gateway'].rate:.2f}x",
        ),
        (
            "PDP POST /pdp (dojot), warm cache (decisions/s)",
            f"{results['pdp_dojot'].rate:,.0f}",
            f"{health.rate:,.0f} (auth GET /health/live)",
            f"{health.rate / results['pdp_dojot'].rate:.2f}x",
        ),
        (
            "PDP GET /pdp/gateway (p50 / p99 ms)",
            f"{results['pdp_gateway'].p50:.1f} / {results['pdp_gateway'].p99:.1f}",
            f"{health.p50:.1f} / {health.p99:.1f}",
            f"{results['pdp_gateway'].p50 / health.p50:.2f}x",
        ),
        (
            f"GET {LIST_PATH} via gateway (req/s)",
            f"{gw.rate:,.0f}",
            f"{direct.rate:,.0f} (direct to device manager)",
            f"{direct.rate / gw.rate:.2f}x",
        ),
        (
            f"GET {LIST_PATH} via gateway (p50 / p99 ms)",
            f"{gw.p50:.1f} / {gw.p99:.1f}",
            f"{direct.p50:.1f} / {direct.p99:.1f}",
            f"{gw.p50 / direct.p50:.2f}x",
        ),
    ]
    print(f"{args.threads} client threads, {args.duration:g}s per measurement after {args.warmup:g}s of warm-up")
    print_table(("operation", "measured", "baseline", "cost vs baseline"), rows)


if __name__ == "__main__":
    main()
