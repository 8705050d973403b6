"""PostgreSQL storage of templates, devices and the event outbox (psycopg 3 + psycopg_pool).

Tenant isolation lives here: every table has a ``tenant`` column that is part of its key, and every query
filters by it. Driver errors are translated into the platform's error hierarchy.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from device_manager.models import Attr, Device, PageRequest, Template, TemplateSpec
from ondas.errors import Invalid, Unavailable

log = logging.getLogger("device_manager.store")

OUTBOX_CHANNEL = "device_manager_outbox"
# Advisory lock keys (64-bit), one per purpose.
MIGRATE_LOCK = 0x0D_0E_0001
OUTBOX_WRITE_LOCK = 0x0D_0E_0002
RELAY_LOCK = 0x0D_0E_0003

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS id_counters (
        tenant text NOT NULL, name text NOT NULL, value bigint NOT NULL,
        PRIMARY KEY (tenant, name))""",
    """CREATE TABLE IF NOT EXISTS templates (
        tenant text NOT NULL, id bigint NOT NULL, label text NOT NULL, created timestamptz NOT NULL,
        PRIMARY KEY (tenant, id))""",
    """CREATE TABLE IF NOT EXISTS template_attrs (
        tenant text NOT NULL, id bigint NOT NULL, template_id bigint NOT NULL, position int NOT NULL,
        label text NOT NULL, type text NOT NULL, value_type text NOT NULL, static_value jsonb,
        created timestamptz NOT NULL,
        PRIMARY KEY (tenant, id),
        UNIQUE (tenant, template_id, label),
        FOREIGN KEY (tenant, template_id) REFERENCES templates (tenant, id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS devices (
        tenant text NOT NULL, id text NOT NULL, label text NOT NULL, created timestamptz NOT NULL,
        PRIMARY KEY (tenant, id))""",
    """CREATE TABLE IF NOT EXISTS device_templates (
        tenant text NOT NULL, device_id text NOT NULL, template_id bigint NOT NULL, position int NOT NULL,
        PRIMARY KEY (tenant, device_id, template_id),
        FOREIGN KEY (tenant, device_id) REFERENCES devices (tenant, id) ON DELETE CASCADE,
        FOREIGN KEY (tenant, template_id) REFERENCES templates (tenant, id))""",
    "CREATE INDEX IF NOT EXISTS device_templates_by_template ON device_templates (tenant, template_id)",
    "CREATE INDEX IF NOT EXISTS devices_by_created ON devices (tenant, created, id)",
    """CREATE TABLE IF NOT EXISTS outbox (
        seq bigserial PRIMARY KEY, tenant text NOT NULL, topic text NOT NULL, key text NOT NULL,
        payload bytea NOT NULL, created timestamptz NOT NULL DEFAULT now())""",
)


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.DataError as exc:
        raise Invalid(f"a value in the request cannot be stored: {exc.diag.message_primary or exc}") from exc
    except psycopg.OperationalError as exc:
        raise Unavailable(f"the device database is unavailable: {exc}") from exc


class PostgresStore:
    """The :class:`device_manager.service.Store` on PostgreSQL."""

    def __init__(self, url: str, max_connections: int = 10, timeout: float = 10.0) -> None:
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            timeout=timeout,
            open=True,
            check=ConnectionPool.check_connection,
            name="device-manager",
        )

    def close(self) -> None:
        self._pool.close()

    def migrate(self) -> None:
        """Create the tables that do not exist yet (serialised, so concurrent workers do not race)."""
        with translate_errors(), self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            for statement in SCHEMA:
                conn.execute(statement)

    def ping(self) -> bool:
        with self._pool.connection(timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    @contextmanager
    def transaction(self) -> Iterator[PostgresTx]:
        with translate_errors(), self._pool.connection() as conn, conn.transaction():
            yield PostgresTx(conn)


class PostgresTx:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def _next_ids(self, tenant: str, name: str, n: int) -> list[int]:
        row = self._conn.execute(
            """INSERT INTO id_counters (tenant, name, value) VALUES (%s, %s, %s)
               ON CONFLICT (tenant, name) DO UPDATE SET value = id_counters.value + EXCLUDED.value
               RETURNING value""",
            (tenant, name, n),
        ).fetchone()
        assert row is not None
        last = int(row[0])
        return list(range(last - n + 1, last + 1))

    # -- templates -----------------------------------------------------------------------------------------
    def insert_template(self, tenant: str, spec: TemplateSpec, created: datetime) -> Template:
        (template_id,) = self._next_ids(tenant, "template", 1)
        self._conn.execute(
            "INSERT INTO templates (tenant, id, label, created) VALUES (%s, %s, %s, %s)",
            (tenant, template_id, spec.label, created),
        )
        attr_ids = self._next_ids(tenant, "attr", len(spec.attrs)) if spec.attrs else []
        attrs = tuple(
            Attr(aid, template_id, a.label, a.type, a.value_type, created, a.static_value)
            for aid, a in zip(attr_ids, spec.attrs, strict=True)
        )
        if attrs:
            with self._conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO template_attrs
                       (tenant, id, template_id, position, label, type, value_type, static_value, created)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    [
                        (
                            tenant,
                            a.id,
                            template_id,
                            pos,
                            a.label,
                            a.type,
                            a.value_type,
                            None if a.static_value is None else Jsonb(a.static_value),
                            created,
                        )
                        for pos, a in enumerate(attrs)
                    ],
                )
        return Template(template_id, spec.label, created, attrs)

    def get_templates(self, tenant: str, ids: list[int]) -> dict[int, Template]:
        if not ids:
            return {}
        rows = self._conn.execute(
            "SELECT id, label, created FROM templates WHERE tenant = %s AND id = ANY(%s)", (tenant, ids)
        ).fetchall()
        attrs: dict[int, list[Attr]] = {int(r[0]): [] for r in rows}
        for a in self._conn.execute(
            """SELECT id, template_id, label, type, value_type, created, static_value FROM template_attrs
               WHERE tenant = %s AND template_id = ANY(%s) ORDER BY template_id, position""",
            (tenant, ids),
        ):
            attrs[int(a[1])].append(Attr(int(a[0]), int(a[1]), a[2], a[3], a[4], a[5], a[6]))
        return {int(r[0]): Template(int(r[0]), r[1], r[2], tuple(attrs[int(r[0])])) for r in rows}

    def list_templates(self, tenant: str, page: PageRequest) -> tuple[list[Template], int]:
        total = self._count("templates", tenant)
        ids = [
            int(r[0])
            for r in self._conn.execute(
                "SELECT id FROM templates WHERE tenant = %s ORDER BY id LIMIT %s OFFSET %s",
                (tenant, page.page_size, page.offset),
            )
        ]
        found = self.get_templates(tenant, ids)
        return [found[i] for i in ids], total

    # -- devices -------------------------------------------------------------------------------------------
    def insert_device(self, tenant: str, device: Device) -> bool:
        row = self._conn.execute(
            """INSERT INTO devices (tenant, id, label, created) VALUES (%s, %s, %s, %s)
               ON CONFLICT (tenant, id) DO NOTHING RETURNING id""",
            (tenant, device.id, device.label, device.created),
        ).fetchone()
        if row is None:
            return False
        if device.templates:
            with self._conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO device_templates (tenant, device_id, template_id, position) VALUES (%s, %s, %s, %s)",
                    [(tenant, device.id, t.id, pos) for pos, t in enumerate(device.templates)],
                )
        return True

    def get_device(self, tenant: str, device_id: str) -> Device | None:
        rows = self._conn.execute(
            "SELECT id, label, created FROM devices WHERE tenant = %s AND id = %s", (tenant, device_id)
        ).fetchall()
        devices = self._assemble(tenant, rows)
        return devices[0] if devices else None

    def list_devices(self, tenant: str, page: PageRequest | None) -> tuple[list[Device], int]:
        query = "SELECT id, label, created FROM devices WHERE tenant = %s ORDER BY created, id"
        params: tuple[Any, ...] = (tenant,)
        if page is not None:
            query += " LIMIT %s OFFSET %s"
            params += (page.page_size, page.offset)
        devices = self._assemble(tenant, self._conn.execute(query, params).fetchall())
        total = self._count("devices", tenant) if page is not None else len(devices)
        return devices, total

    def delete_device(self, tenant: str, device_id: str) -> bool:
        cur = self._conn.execute("DELETE FROM devices WHERE tenant = %s AND id = %s", (tenant, device_id))
        return cur.rowcount == 1

    def _assemble(self, tenant: str, rows: list[tuple[Any, ...]]) -> list[Device]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        links: dict[str, list[int]] = {i: [] for i in ids}
        for device_id, template_id in self._conn.execute(
            """SELECT device_id, template_id FROM device_templates
               WHERE tenant = %s AND device_id = ANY(%s) ORDER BY device_id, position""",
            (tenant, ids),
        ):
            links[device_id].append(int(template_id))
        templates = self.get_templates(tenant, sorted({t for ts in links.values() for t in ts}))
        return [Device(r[0], r[1], r[2], tuple(templates[t] for t in links[r[0]])) for r in rows]

    def _count(self, table: str, tenant: str) -> int:
        query = sql.SQL("SELECT count(*) FROM {} WHERE tenant = %s").format(sql.Identifier(table))
        row = self._conn.execute(query, (tenant,)).fetchone()
        return int(row[0]) if row else 0

    # -- outbox --------------------------------------------------------------------------------------------
    def add_event(self, tenant: str, topic: str, key: str, payload: bytes) -> None:
        # Held until commit: outbox sequence numbers are then assigned in commit order, so the relay
        # never publishes a later change before an earlier one.
        self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_WRITE_LOCK,))
        self._conn.execute(
            "INSERT INTO outbox (tenant, topic, key, payload) VALUES (%s, %s, %s, %s)", (tenant, topic, key, payload)
        )
        self._conn.execute(sql.SQL("NOTIFY {}").format(sql.Identifier(OUTBOX_CHANNEL)))


# -- the relay's side of the outbox ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OutboxRow:
    seq: int
    tenant: str
    topic: str
    key: str
    payload: bytes


def pending(conn: psycopg.Connection[Any], limit: int) -> list[OutboxRow]:
    rows = conn.execute(
        "SELECT seq, tenant, topic, key, payload FROM outbox ORDER BY seq LIMIT %s", (limit,)
    ).fetchall()
    return [OutboxRow(int(r[0]), r[1], r[2], r[3], bytes(r[4])) for r in rows]


def mark_published(conn: psycopg.Connection[Any], seqs: list[int]) -> None:
    if seqs:
        conn.execute("DELETE FROM outbox WHERE seq = ANY(%s)", (seqs,))


def count_pending(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM outbox").fetchone()
    return int(row[0]) if row else 0
