"""Device manager benchmark: creation throughput and filtered listing latency, each next to the raw SQL time
of the same work. Run on demand, never by the test suite:

    .venv/bin/python -m bench.device_manager [--devices 10000] [--population 100000] [--runs 50]

It starts its own PostgreSQL (the way the tests do, on a free port in a throw-away folder) and the real API
process (gunicorn, ``python -m device_manager api``), and prints one table.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import requests
from psycopg import sql

from bench.common import percentile, print_table
from device_manager.models import Filter, PageRequest
from device_manager.store_postgres import PostgresTx
from ondasctl.infra import create_databases
from ondasctl.ports import free_port
from tests.servers import Servers
from tests.tokens import TokenMaker

TENANT = "bench"
RAW_TENANT = "benchraw"
BULK = 1000


def _wait(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


class Bench:
    def __init__(self, db_url: str, base: str, headers: dict[str, str]) -> None:
        self.db_url = db_url
        self.base = base
        self.http = requests.Session()
        self.http.headers.update(headers)
        self.rows: list[tuple[str, str, str]] = []

    def post(self, path: str, body: Any) -> Any:
        resp = self.http.post(f"{self.base}{path}", json=body, timeout=120)
        resp.raise_for_status()
        return resp.json()

    # -- setup ---------------------------------------------------------------------------------------------
    def templates(self) -> dict[str, int]:
        specs = {
            "sensor": [
                {"label": "temperature", "type": "dynamic", "value_type": "float"},
                {"label": "serial", "type": "static", "value_type": "string", "static_value": "none"},
            ],
            "geo": [{"label": "position", "type": "dynamic", "value_type": "geo:point"}],
            "switch": [{"label": "led", "type": "actuator", "value_type": "bool"}],
            "kit": [{"label": "model", "type": "static", "value_type": "string", "static_value": "m1"}],
        }
        return {
            name: self.post("/template", {"label": name, "attrs": attrs})["template"]["id"]
            for name, attrs in specs.items()
        }

    def _raw_templates(self, conn: psycopg.Connection[Any]) -> None:
        """The same templates for the raw SQL tenant (created through the store, not timed)."""
        for tid in (1, 2, 3, 4):
            conn.execute(
                "INSERT INTO templates (tenant, id, label, created) VALUES (%s, %s, %s, now())",
                (RAW_TENANT, tid, f"t{tid}"),
            )
        conn.execute(
            """INSERT INTO template_attrs (tenant, id, template_id, position, label, type, value_type, created)
               VALUES (%s, 1, 1, 0, 'temperature', 'dynamic', 'float', now())""",
            (RAW_TENANT,),
        )

    # -- creation ------------------------------------------------------------------------------------------
    def create_one_by_one(self, n: int, template: int) -> float:
        start = time.perf_counter()
        for i in range(n):
            self.post("/device", {"label": f"one-{i}", "templates": [template]})
        return n / (time.perf_counter() - start)

    def create_bulk(self, n: int, templates: list[int], prefix: str, overrides: Any = None) -> float:
        start = time.perf_counter()
        for b in range(0, n, BULK):
            body: dict[str, Any] = {"label": f"{prefix}-{b // BULK}", "templates": templates}
            if overrides is not None:
                body["attrs"] = overrides
            self.post(f"/device?count={min(BULK, n - b)}", body)
        return n / (time.perf_counter() - start)

    def raw_one_by_one(self, n: int) -> float:
        """Per device, in its own transaction: the device row, its template link and its outbox event."""
        with psycopg.connect(self.db_url) as conn:
            conn.execute("DELETE FROM devices WHERE tenant = %s", (RAW_TENANT,))
            conn.commit()
            start = time.perf_counter()
            for i in range(n):
                device_id = uuid.uuid4().hex[:6]
                with conn.transaction():
                    conn.execute(
                        """INSERT INTO devices (tenant, id, label, created) VALUES (%s, %s, %s, now())
                           ON CONFLICT DO NOTHING""",
                        (RAW_TENANT, device_id, f"one-{i}"),
                    )
                    conn.execute(
                        """INSERT INTO device_templates (tenant, device_id, template_id, position)
                           VALUES (%s, %s, 1, 0) ON CONFLICT DO NOTHING""",
                        (RAW_TENANT, device_id),
                    )
                    conn.execute(
                        "INSERT INTO outbox (tenant, topic, key, payload) VALUES (%s, %s, %s, %s)",
                        (RAW_TENANT, "benchraw.x", device_id, b'{"event":"create"}' * 20),
                    )
            elapsed = time.perf_counter() - start
            conn.execute("DELETE FROM outbox WHERE tenant = %s", (RAW_TENANT,))
        return n / elapsed

    def raw_bulk(self, n: int) -> float:
        """Per BULK devices, in one transaction: the same rows with one multi-row statement per table."""
        with psycopg.connect(self.db_url) as conn:
            conn.execute("DELETE FROM devices WHERE tenant = %s", (RAW_TENANT,))
            conn.commit()
            start = time.perf_counter()
            for b in range(0, n, BULK):
                ids = [uuid.uuid4().hex[:8] for _ in range(min(BULK, n - b))]
                with conn.transaction():
                    conn.execute(
                        """INSERT INTO devices (tenant, id, label, created)
                           SELECT %s, u.id, 'bulk', now() FROM unnest(%s::text[]) AS u(id) ON CONFLICT DO NOTHING""",
                        (RAW_TENANT, ids),
                    )
                    conn.execute(
                        """INSERT INTO device_templates (tenant, device_id, template_id, position)
                           SELECT %s, u.id, 1, 0 FROM unnest(%s::text[]) AS u(id) ON CONFLICT DO NOTHING""",
                        (RAW_TENANT, ids),
                    )
                    conn.execute(
                        """INSERT INTO outbox (tenant, topic, key, payload)
                           SELECT %s, 'benchraw.x', u.id, %s FROM unnest(%s::text[]) AS u(id)""",
                        (RAW_TENANT, b'{"event":"create"}' * 20, ids),
                    )
            elapsed = time.perf_counter() - start
            conn.execute("DELETE FROM outbox WHERE tenant = %s", (RAW_TENANT,))
            conn.execute("DELETE FROM devices WHERE tenant = %s", (RAW_TENANT,))
        return n / elapsed

    # -- listing -------------------------------------------------------------------------------------------
    def time_api(self, query: str, runs: int) -> list[float]:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            resp = self.http.get(f"{self.base}/device?{query}", timeout=60)
            resp.raise_for_status()
            samples.append((time.perf_counter() - start) * 1000)
        return samples

    def time_sql(self, f: Filter, page: PageRequest, runs: int) -> list[float]:
        """The listing's own SQL (the page of rows and the count), straight on the database."""
        samples = []
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            tx = PostgresTx(conn, TENANT)
            where, params = tx._device_where(f)
            order = {"label": "d.label", "id": "d.id"}.get(f.sort or "", "d.created")
            select = sql.SQL(
                "SELECT d.id, d.label, d.created FROM devices d WHERE {} ORDER BY {}, d.id LIMIT %s OFFSET %s"
            )
            page_query = select.format(where, sql.SQL(order))
            count_query = sql.SQL("SELECT count(*) FROM devices d WHERE {}").format(where)
            for _ in range(runs):
                start = time.perf_counter()
                conn.execute(page_query, [*params, page.page_size, page.offset]).fetchall()
                conn.execute(count_query, params).fetchone()
                samples.append((time.perf_counter() - start) * 1000)
        return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=10_000, help="devices created one by one, and in bulk")
    parser.add_argument("--population", type=int, default=100_000, help="devices present while listing")
    parser.add_argument("--runs", type=int, default=50, help="requests per listing query")
    args = parser.parse_args(argv)

    servers = Servers()
    proc: subprocess.Popen[bytes] | None = None
    try:
        cfg = servers.ensure("postgres")
        name = f"bench_{uuid.uuid4().hex[:8]}"
        create_databases(cfg, [name])
        db_url = cfg.postgres_url(name)
        tokens = TokenMaker(Path(tempfile.mkdtemp(prefix="ondas-bench-keys-")))
        port = free_port()
        env = {
            **os.environ,
            "DEVICE_MANAGER_DB_URL": db_url,
            "DEVICE_MANAGER_HTTP_PORT": str(port),
            "DEVICE_MANAGER_HTTP_WORKERS": "2",
            "ONDAS_KAFKA_BOOTSTRAP": "127.0.0.1:1",  # the API never talks to Kafka; the relay is not run
            "ONDAS_JWT_PUBLIC_KEY_FILE": str(tokens.public_file),
            "ONDAS_BIND_HOST": "127.0.0.1",
            "ONDAS_LOG_LEVEL": "WARNING",
        }
        log = open(os.devnull, "wb")
        proc = subprocess.Popen([sys.executable, "-m", "device_manager", "api"], env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        _wait(f"{base}/health/ready")
        bench = Bench(db_url, base, {"Authorization": f"Bearer {tokens.token(TENANT, ttl=24 * 3600)}"})
        with psycopg.connect(db_url) as conn:
            bench._raw_templates(conn)
        t = bench.templates()
        rows: list[tuple[str, str, str]] = []
        n = args.devices
        print(f"creating {n} devices one by one ...", file=sys.stderr)
        api_one = bench.create_one_by_one(n, t["sensor"])
        raw_one = bench.raw_one_by_one(n)
        rows.append((f"create {n:,} devices one by one (devices/s)", f"{api_one:,.0f}", f"{raw_one:,.0f}"))
        print(f"creating {n} devices in bulk ...", file=sys.stderr)
        api_bulk = bench.create_bulk(n, [t["sensor"], t["kit"]], "bulk")
        raw_bulk = bench.raw_bulk(n)
        rows.append((f"create {n:,} devices in bulk, count={BULK} (devices/s)", f"{api_bulk:,.0f}", f"{raw_bulk:,.0f}"))

        rest = max(0, args.population - 2 * n)
        print(f"growing to {args.population} devices ...", file=sys.stderr)
        quarter = rest // 4
        bench.create_bulk(quarter, [t["geo"]], "geo")
        bench.create_bulk(quarter, [t["switch"], t["kit"]], "switch")
        bench.create_bulk(quarter, [t["kit"]], "special", overrides=[{"label": "model", "static_value": "m2"}])
        bench.create_bulk(rest - 3 * quarter, [t["sensor"]], "plain")
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            total = conn.execute("SELECT count(*) FROM devices WHERE tenant = %s", (TENANT,)).fetchone()
        print(f"listing at {total[0] if total else 0} devices ...", file=sys.stderr)

        queries: list[tuple[str, str, Filter, PageRequest]] = [
            ("no filter, first page", "page_size=20", Filter(), PageRequest(1, 20)),
            ("no filter, page 2000", "page_size=20&page_num=2000", Filter(), PageRequest(2000, 20)),
            ("label substring", "label=geo-7_", Filter(label="geo-7_"), PageRequest(1, 20)),
            ("attr=model=m2 (override)", "attr=model=m2", Filter(attrs=(("model", "m2"),)), PageRequest(1, 20)),
            ("attr=model=m1 (template value)", "attr=model=m1", Filter(attrs=(("model", "m1"),)), PageRequest(1, 20)),
            ("attr_type=geo:point", "attr_type=geo:point", Filter(attr_type="geo:point"), PageRequest(1, 20)),
            ("template=<id>", f"template={t['switch']}", Filter(template=t["switch"]), PageRequest(1, 20)),
            ("sortBy=label, page 100", "sortBy=label&page_num=100", Filter(sort="label"), PageRequest(100, 20)),
            (
                "label + attr + sortBy, 100/page",
                "label=special&attr=model=m2&sortBy=label&page_size=100",
                Filter(label="special", attrs=(("model", "m2"),), sort="label"),
                PageRequest(1, 100),
            ),
        ]
        for title, query, f, page in queries:
            api = bench.time_api(query, args.runs)
            raw = bench.time_sql(f, page, args.runs)
            rows.append(
                (
                    f"list: {title} (p50 / p99 ms)",
                    f"{statistics.median(api):.1f} / {percentile(api, 0.99):.1f}",
                    f"{statistics.median(raw):.1f} / {percentile(raw, 0.99):.1f}",
                )
            )
        print_table(("operation", "device manager API", "raw SQL"), rows)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        servers.stop()


if __name__ == "__main__":
    main()
