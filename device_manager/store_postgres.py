"""PostgreSQL storage of templates, devices and the event outbox (psycopg 3 + psycopg_pool).

Tenant isolation lives here: every table has a ``tenant`` column that is part of its key, a transaction is bound
to one tenant when it is opened (:meth:`PostgresStore.transaction`), and every query of :class:`PostgresTx` filters
by that tenant. Handlers and the service never write a tenant condition themselves. Driver errors are translated
into the platform's error hierarchy.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from device_manager.models import Attr, Device, Filter, Meta, PageRequest, Template
from ondas.errors import Conflict, Invalid, Unavailable
from ondas.tenant import validate_tenant

log = logging.getLogger("device_manager.store")

OUTBOX_CHANNEL = "device_manager_outbox"
# Advisory lock keys (64-bit), one per purpose.
MIGRATE_LOCK = 0x0D_0E_0001
OUTBOX_WRITE_LOCK = 0x0D_0E_0002
RELAY_LOCK = 0x0D_0E_0003
CHUNK = 2000  # rows per statement when loading many devices

Lock = Literal["share", "update"] | None

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
        UNIQUE (tenant, template_id, label) DEFERRABLE INITIALLY DEFERRED,
        FOREIGN KEY (tenant, template_id) REFERENCES templates (tenant, id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS attr_metadata (
        tenant text NOT NULL, id bigint NOT NULL, attr_id bigint NOT NULL, position int NOT NULL,
        label text NOT NULL, type text NOT NULL, value_type text NOT NULL, static_value jsonb,
        created timestamptz NOT NULL, updated timestamptz,
        PRIMARY KEY (tenant, id),
        UNIQUE (tenant, attr_id, label) DEFERRABLE INITIALLY DEFERRED,
        FOREIGN KEY (tenant, attr_id) REFERENCES template_attrs (tenant, id) ON DELETE CASCADE)""",
    """CREATE TABLE IF NOT EXISTS devices (
        tenant text NOT NULL, id text NOT NULL, label text NOT NULL, created timestamptz NOT NULL,
        PRIMARY KEY (tenant, id))""",
    """CREATE TABLE IF NOT EXISTS device_templates (
        tenant text NOT NULL, device_id text NOT NULL, template_id bigint NOT NULL, position int NOT NULL,
        PRIMARY KEY (tenant, device_id, template_id),
        FOREIGN KEY (tenant, device_id) REFERENCES devices (tenant, id) ON DELETE CASCADE,
        FOREIGN KEY (tenant, template_id) REFERENCES templates (tenant, id))""",
    # A device's own static value of an attribute or of a meta attribute (attr_id is either's id).
    """CREATE TABLE IF NOT EXISTS device_overrides (
        tenant text NOT NULL, device_id text NOT NULL, attr_id bigint NOT NULL, static_value jsonb NOT NULL,
        PRIMARY KEY (tenant, device_id, attr_id),
        FOREIGN KEY (tenant, device_id) REFERENCES devices (tenant, id) ON DELETE CASCADE)""",
    "ALTER TABLE templates ADD COLUMN IF NOT EXISTS updated timestamptz",
    "ALTER TABLE template_attrs ADD COLUMN IF NOT EXISTS updated timestamptz",
    "ALTER TABLE devices ADD COLUMN IF NOT EXISTS updated timestamptz",
    "ALTER TABLE devices ADD COLUMN IF NOT EXISTS disabled boolean NOT NULL DEFAULT false",
    "CREATE INDEX IF NOT EXISTS device_templates_by_template ON device_templates (tenant, template_id)",
    "CREATE INDEX IF NOT EXISTS devices_by_created ON devices (tenant, created, id)",
    "CREATE INDEX IF NOT EXISTS devices_by_label ON devices (tenant, label, id)",
    "CREATE INDEX IF NOT EXISTS attr_metadata_by_attr ON attr_metadata (tenant, attr_id)",
    "CREATE INDEX IF NOT EXISTS template_attrs_by_label ON template_attrs (tenant, label)",
    """CREATE TABLE IF NOT EXISTS outbox (
        seq bigserial PRIMARY KEY, tenant text NOT NULL, topic text NOT NULL, key text NOT NULL,
        payload bytea NOT NULL, created timestamptz NOT NULL DEFAULT now())""",
    # The configurations imports replaced (the export document), newest last; a few kept per tenant.
    """CREATE TABLE IF NOT EXISTS import_backups (
        seq bigserial PRIMARY KEY, tenant text NOT NULL, created timestamptz NOT NULL DEFAULT now(),
        document jsonb NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS import_backups_by_tenant ON import_backups (tenant, seq)",
)


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.errors.IntegrityError as exc:
        raise Conflict(
            f"the change conflicts with a concurrent one; retry it ({exc.diag.message_primary or exc})"
        ) from exc
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

    def purge_tenant(self, tenant: str, created_before: dt.datetime | None = None) -> dict[str, int]:
        """Remove a deleted tenant's devices, templates, queued events and id counters, in one transaction.

        With ``created_before`` (the tenant exists again: created anew after the deletion) only the rows created
        before that instant go, and the id counters go only when nothing of the new tenant is left, so its rows
        and ids are untouched."""
        tenant = validate_tenant(tenant)
        args = (tenant, created_before or dt.datetime.max.replace(tzinfo=dt.UTC))
        counts: dict[str, int] = {}
        with translate_errors(), self._pool.connection() as conn, conn.transaction():
            # Ids are allocated under these rows' locks: holding them, no id of the tenant is handed out meanwhile.
            conn.execute("SELECT 1 FROM id_counters WHERE tenant = %s FOR UPDATE", (tenant,))
            counts["devices"] = conn.execute("DELETE FROM devices WHERE tenant = %s AND created < %s", args).rowcount
            counts["templates"] = conn.execute(
                """DELETE FROM templates t WHERE tenant = %s AND created < %s AND NOT EXISTS
                   (SELECT 1 FROM device_templates d WHERE d.tenant = t.tenant AND d.template_id = t.id)""",
                args,
            ).rowcount
            counts["events"] = conn.execute("DELETE FROM outbox WHERE tenant = %s AND created < %s", args).rowcount
            conn.execute("DELETE FROM import_backups WHERE tenant = %s AND created < %s", args)
            conn.execute(
                """DELETE FROM id_counters WHERE tenant = %s
                   AND NOT EXISTS (SELECT 1 FROM templates WHERE tenant = %s)
                   AND NOT EXISTS (SELECT 1 FROM devices WHERE tenant = %s)""",
                (tenant, tenant, tenant),
            )
        return counts

    @contextmanager
    def transaction(self, tenant: str) -> Iterator[PostgresTx]:
        """One transaction that sees and changes only ``tenant``'s rows."""
        tenant = validate_tenant(tenant)
        with translate_errors(), self._pool.connection() as conn, conn.transaction():
            yield PostgresTx(conn, tenant)


def _jsonb(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


_DEVICE_SORT = {
    "id": "d.id",
    "label": "d.label",
    "created": "d.created",
    "updated": "COALESCE(d.updated, d.created)",
}
_TEMPLATE_SORT = {
    "id": "t.id",
    "label": "t.label",
    "created": "t.created",
    "updated": "COALESCE(t.updated, t.created)",
}


class PostgresTx:
    """Every query is scoped to the tenant the transaction was opened for."""

    def __init__(self, conn: psycopg.Connection[Any], tenant: str) -> None:
        self._conn = conn
        self.tenant = tenant

    # -- ids -----------------------------------------------------------------------------------------------
    def allocate_ids(self, name: str, n: int) -> list[int]:
        if n <= 0:
            return []
        row = self._conn.execute(
            """INSERT INTO id_counters (tenant, name, value) VALUES (%s, %s, %s)
               ON CONFLICT (tenant, name) DO UPDATE SET value = id_counters.value + EXCLUDED.value
               RETURNING value""",
            (self.tenant, name, n),
        ).fetchone()
        assert row is not None
        last = int(row[0])
        return list(range(last - n + 1, last + 1))

    def raise_ids(self, name: str, floor: int) -> None:
        """Make later :meth:`allocate_ids` calls return ids above ``floor``."""
        self._conn.execute(
            """INSERT INTO id_counters (tenant, name, value) VALUES (%s, %s, %s)
               ON CONFLICT (tenant, name) DO UPDATE SET value = GREATEST(id_counters.value, EXCLUDED.value)""",
            (self.tenant, name, floor),
        )

    # -- templates -----------------------------------------------------------------------------------------
    def insert_templates(self, templates: list[Template]) -> None:
        if not templates:
            return
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO templates (tenant, id, label, created, updated) VALUES (%s, %s, %s, %s, %s)",
                [(self.tenant, t.id, t.label, t.created, t.updated) for t in templates],
            )
        self._write_attrs([a for t in templates for a in t.attrs])

    def _write_attrs(self, attrs: list[Attr]) -> None:
        """Insert or update these attributes and replace their metadata."""
        if not attrs:
            return
        with self._conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO template_attrs
                   (tenant, id, template_id, position, label, type, value_type, static_value, created, updated)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (tenant, id) DO UPDATE SET position = EXCLUDED.position, label = EXCLUDED.label,
                     type = EXCLUDED.type, value_type = EXCLUDED.value_type, static_value = EXCLUDED.static_value,
                     updated = EXCLUDED.updated""",
                [
                    (
                        self.tenant,
                        a.id,
                        a.template_id,
                        pos,
                        a.label,
                        a.type,
                        a.value_type,
                        _jsonb(a.static_value),
                        a.created,
                        a.updated,
                    )
                    for pos, a in _positions(attrs)
                ],
            )
            cur.execute(
                "DELETE FROM attr_metadata WHERE tenant = %s AND attr_id = ANY(%s)",
                (self.tenant, [a.id for a in attrs]),
            )
            metas = [(a.id, pos, m) for a in attrs for pos, m in enumerate(a.metadata)]
            if metas:
                cur.executemany(
                    """INSERT INTO attr_metadata
                       (tenant, id, attr_id, position, label, type, value_type, static_value, created, updated)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                    [
                        (
                            self.tenant,
                            m.id,
                            attr_id,
                            pos,
                            m.label,
                            m.type,
                            m.value_type,
                            _jsonb(m.static_value),
                            m.created,
                            m.updated,
                        )
                        for attr_id, pos, m in metas
                    ],
                )

    def update_template(self, old: Template, new: Template) -> None:
        """Replace ``old`` by ``new`` (same id); attributes that keep their id keep the devices' overrides."""
        self._conn.execute(
            "UPDATE templates SET label = %s, updated = %s WHERE tenant = %s AND id = %s",
            (new.label, new.updated, self.tenant, new.id),
        )
        kept = {a.id for a in new.attrs}
        gone = [a.id for a in old.attrs if a.id not in kept]
        gone_meta = [m.id for a in old.attrs for m in a.metadata]
        kept_meta = {m.id for a in new.attrs for m in a.metadata}
        dropped = gone + [m for m in gone_meta if m not in kept_meta]
        if gone:
            self._conn.execute("DELETE FROM template_attrs WHERE tenant = %s AND id = ANY(%s)", (self.tenant, gone))
        if dropped:
            self._conn.execute(
                "DELETE FROM device_overrides WHERE tenant = %s AND attr_id = ANY(%s)", (self.tenant, dropped)
            )
        self._write_attrs(list(new.attrs))

    def delete_templates(self, ids: list[int]) -> None:
        self._conn.execute("DELETE FROM templates WHERE tenant = %s AND id = ANY(%s)", (self.tenant, ids))

    def get_templates(self, ids: list[int], lock: Lock = None) -> dict[int, Template]:
        if not ids:
            return {}
        query = "SELECT id, label, created, updated FROM templates WHERE tenant = %s AND id = ANY(%s) ORDER BY id"
        if lock is not None:
            query += " FOR SHARE" if lock == "share" else " FOR UPDATE"
        rows = self._conn.execute(query, (self.tenant, ids)).fetchall()
        return self._assemble_templates(rows)

    def _assemble_templates(self, rows: list[tuple[Any, ...]]) -> dict[int, Template]:
        ids = [int(r[0]) for r in rows]
        if not ids:
            return {}
        # Attributes and their metadata in one round trip: metadata rows carry the attribute's id in attr_id.
        rows_all = self._conn.execute(
            """SELECT a.id, a.template_id, a.label, a.type, a.value_type, a.created, a.static_value, a.updated,
                      NULL::bigint AS attr_id, a.position
               FROM template_attrs a WHERE a.tenant = %s AND a.template_id = ANY(%s)
               UNION ALL
               SELECT m.id, a.template_id, m.label, m.type, m.value_type, m.created, m.static_value, m.updated,
                      m.attr_id, m.position
               FROM attr_metadata m JOIN template_attrs a ON a.tenant = m.tenant AND a.id = m.attr_id
               WHERE m.tenant = %s AND a.template_id = ANY(%s)
               ORDER BY 2, 9 NULLS FIRST, 10""",
            (self.tenant, ids, self.tenant, ids),
        ).fetchall()
        attr_rows = [r for r in rows_all if r[8] is None]
        metas: dict[int, list[Meta]] = {}
        for m in rows_all:
            if m[8] is not None:
                metas.setdefault(int(m[8]), []).append(Meta(int(m[0]), m[2], m[3], m[4], m[5], m[6], m[7]))
        attrs: dict[int, list[Attr]] = {i: [] for i in ids}
        for a in attr_rows:
            aid = int(a[0])
            attrs[int(a[1])].append(Attr(aid, int(a[1]), a[2], a[3], a[4], a[5], a[6], tuple(metas.get(aid, ())), a[7]))
        return {int(r[0]): Template(int(r[0]), r[1], r[2], tuple(attrs[int(r[0])]), r[3]) for r in rows}

    def _template_where(self, f: Filter) -> tuple[sql.Composable, list[Any]]:
        clauses: list[sql.Composable] = [sql.SQL("t.tenant = %s")]
        params: list[Any] = [self.tenant]
        if f.label:
            clauses.append(sql.SQL("t.label ILIKE %s"))
            params.append(_like(f.label))
        for label, value in f.attrs:
            clauses.append(
                sql.SQL(
                    """EXISTS (SELECT 1 FROM template_attrs a WHERE a.tenant = t.tenant AND a.template_id = t.id
                       AND a.label = %s AND a.static_value #>> '{}' = %s)"""
                )
            )
            params += [label, value]
        if f.attr_type:
            clauses.append(
                sql.SQL(
                    """EXISTS (SELECT 1 FROM template_attrs a WHERE a.tenant = t.tenant AND a.template_id = t.id
                       AND (a.value_type = %s OR a.type = %s))"""
                )
            )
            params += [f.attr_type, f.attr_type]
        return sql.SQL(" AND ").join(clauses), params

    def list_templates(self, f: Filter, page: PageRequest | None) -> tuple[list[Template], int]:
        where, params = self._template_where(f)
        order = _TEMPLATE_SORT[f.sort or "id"]
        direction = "DESC" if f.descending else "ASC"
        query = sql.SQL(
            "SELECT t.id, t.label, t.created, t.updated FROM templates t WHERE {} ORDER BY {} {}, t.id {}"
        ).format(where, sql.SQL(order), sql.SQL(direction), sql.SQL(direction))
        args = list(params)
        if page is not None:
            query += sql.SQL(" LIMIT %s OFFSET %s")
            args += [page.page_size, page.offset]
        rows = self._conn.execute(query, args).fetchall()
        found = self._assemble_templates(rows)
        items = [found[int(r[0])] for r in rows]
        if page is None:
            return items, len(items)
        count = self._conn.execute(sql.SQL("SELECT count(*) FROM templates t WHERE {}").format(where), params)
        row = count.fetchone()
        return items, int(row[0]) if row else 0

    def template_users(self, template_ids: list[int], sample: int = 10) -> tuple[int, list[str]]:
        """How many devices use any of these templates, and the ids of a few of them."""
        row = self._conn.execute(
            "SELECT count(DISTINCT device_id) FROM device_templates WHERE tenant = %s AND template_id = ANY(%s)",
            (self.tenant, template_ids),
        ).fetchone()
        ids = [
            r[0]
            for r in self._conn.execute(
                """SELECT DISTINCT device_id FROM device_templates WHERE tenant = %s AND template_id = ANY(%s)
                   ORDER BY device_id LIMIT %s""",
                (self.tenant, template_ids, sample),
            )
        ]
        return (int(row[0]) if row else 0), ids

    def device_ids_using(self, template_id: int) -> list[str]:
        return [
            r[0]
            for r in self._conn.execute(
                "SELECT device_id FROM device_templates WHERE tenant = %s AND template_id = %s ORDER BY device_id",
                (self.tenant, template_id),
            )
        ]

    def label_clashes(self, template_id: int, labels: list[str]) -> list[tuple[str, int, str, int]]:
        """Attribute labels in ``labels`` that another template of a device using ``template_id`` also has:
        (label, other template id, one such device id, number of such devices)."""
        if not labels:
            return []
        rows = self._conn.execute(
            """SELECT a.label, a.template_id, min(dt2.device_id), count(DISTINCT dt2.device_id)
               FROM device_templates dt1
               JOIN device_templates dt2
                 ON dt2.tenant = dt1.tenant AND dt2.device_id = dt1.device_id AND dt2.template_id <> dt1.template_id
               JOIN template_attrs a ON a.tenant = dt2.tenant AND a.template_id = dt2.template_id
               WHERE dt1.tenant = %s AND dt1.template_id = %s AND a.label = ANY(%s)
               GROUP BY a.label, a.template_id ORDER BY a.label, a.template_id""",
            (self.tenant, template_id, labels),
        ).fetchall()
        return [(r[0], int(r[1]), r[2], int(r[3])) for r in rows]

    # -- devices -------------------------------------------------------------------------------------------
    def insert_devices(self, devices: list[Device]) -> set[str]:
        """Insert the devices whose id is free; returns the ids that were taken (those were not inserted)."""
        if not devices:
            return set()
        rows = self._conn.execute(
            """INSERT INTO devices (tenant, id, label, created, updated, disabled)
               SELECT %s, u.id, u.label, u.created, u.updated, u.disabled
               FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::boolean[])
                 AS u(id, label, created, updated, disabled)
               ON CONFLICT (tenant, id) DO NOTHING RETURNING id""",
            (
                self.tenant,
                [d.id for d in devices],
                [d.label for d in devices],
                [d.created for d in devices],
                [d.updated for d in devices],
                [d.disabled for d in devices],
            ),
        ).fetchall()
        inserted = {r[0] for r in rows}
        done = [d for d in devices if d.id in inserted]
        self._write_links(done)
        self._write_overrides(done)
        return {d.id for d in devices} - inserted

    def _write_links(self, devices: list[Device]) -> None:
        links = [(d.id, t.id, pos) for d in devices for pos, t in enumerate(d.templates)]
        if links:
            self._conn.execute(
                """INSERT INTO device_templates (tenant, device_id, template_id, position)
                   SELECT %s, u.d, u.t, u.p FROM unnest(%s::text[], %s::bigint[], %s::int[]) AS u(d, t, p)""",
                (self.tenant, [x[0] for x in links], [x[1] for x in links], [x[2] for x in links]),
            )

    def _write_overrides(self, devices: list[Device]) -> None:
        rows = [(d.id, aid, Jsonb(v)) for d in devices for aid, v in d.overrides.items()]
        if rows:
            with self._conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO device_overrides (tenant, device_id, attr_id, static_value)
                       VALUES (%s, %s, %s, %s)""",
                    [(self.tenant, *r) for r in rows],
                )

    def update_device(self, device: Device) -> None:
        """Store the device's label, flag, templates and overrides as they are now."""
        self._conn.execute(
            "UPDATE devices SET label = %s, updated = %s, disabled = %s WHERE tenant = %s AND id = %s",
            (device.label, device.updated, device.disabled, self.tenant, device.id),
        )
        self._conn.execute(
            "DELETE FROM device_templates WHERE tenant = %s AND device_id = %s", (self.tenant, device.id)
        )
        self._conn.execute(
            "DELETE FROM device_overrides WHERE tenant = %s AND device_id = %s", (self.tenant, device.id)
        )
        self._write_links([device])
        self._write_overrides([device])

    def get_device(self, device_id: str, lock: bool = False) -> Device | None:
        query = "SELECT id, label, created, updated, disabled FROM devices WHERE tenant = %s AND id = %s"
        if lock:
            query += " FOR UPDATE"
        rows = self._conn.execute(query, (self.tenant, device_id)).fetchall()
        devices = self._assemble(rows)
        return devices[0] if devices else None

    def get_devices(self, ids: list[str]) -> list[Device]:
        out: list[Device] = []
        for part in _chunks(ids):
            rows = self._conn.execute(
                """SELECT id, label, created, updated, disabled FROM devices
                   WHERE tenant = %s AND id = ANY(%s) ORDER BY id""",
                (self.tenant, part),
            ).fetchall()
            out += self._assemble(rows)
        return out

    def _device_where(self, f: Filter) -> tuple[sql.Composable, list[Any]]:
        clauses: list[sql.Composable] = [sql.SQL("d.tenant = %s")]
        params: list[Any] = [self.tenant]
        if f.label:
            clauses.append(sql.SQL("d.label ILIKE %s"))
            params.append(_like(f.label))
        if f.template is not None:
            clauses.append(
                sql.SQL(
                    """d.id IN (SELECT dt.device_id FROM device_templates dt
                               WHERE dt.tenant = %s AND dt.template_id = %s)"""
                )
            )
            params += [self.tenant, f.template]
        if f.disabled is not None:
            clauses.append(sql.SQL("d.disabled = %s"))
            params.append(f.disabled)
        for label, value in f.attrs:
            # Devices whose template has the value and that do not override it, plus devices whose own value
            # it is: two set lookups the planner can hash, rather than a probe per device.
            clauses.append(
                sql.SQL(
                    """d.id IN (
                         SELECT dt.device_id FROM template_attrs a
                         JOIN device_templates dt ON dt.tenant = a.tenant AND dt.template_id = a.template_id
                         WHERE a.tenant = %s AND a.label = %s AND a.static_value #>> '{}' = %s
                           AND NOT EXISTS (SELECT 1 FROM device_overrides o WHERE o.tenant = dt.tenant
                                           AND o.device_id = dt.device_id AND o.attr_id = a.id)
                         UNION
                         SELECT o.device_id FROM device_overrides o
                         JOIN template_attrs a ON a.tenant = o.tenant AND a.id = o.attr_id
                         WHERE o.tenant = %s AND a.label = %s AND o.static_value #>> '{}' = %s)"""
                )
            )
            params += [self.tenant, label, value, self.tenant, label, value]
        if f.attr_type:
            clauses.append(
                sql.SQL(
                    """d.id IN (SELECT dt.device_id FROM device_templates dt WHERE dt.tenant = %s AND dt.template_id IN
                         (SELECT a.template_id FROM template_attrs a
                          WHERE a.tenant = %s AND (a.value_type = %s OR a.type = %s)))"""
                )
            )
            params += [self.tenant, self.tenant, f.attr_type, f.attr_type]
        return sql.SQL(" AND ").join(clauses), params

    def _device_rows(self, f: Filter, page: PageRequest | None, columns: str) -> list[tuple[Any, ...]]:
        where, params = self._device_where(f)
        direction = sql.SQL("DESC" if f.descending else "ASC")
        query = sql.SQL("SELECT {} FROM devices d WHERE {} ORDER BY {} {}, d.id {}").format(
            sql.SQL(columns), where, sql.SQL(_DEVICE_SORT[f.sort or "created"]), direction, direction
        )
        args = list(params)
        if page is not None:
            query += sql.SQL(" LIMIT %s OFFSET %s")
            args += [page.page_size, page.offset]
        return self._conn.execute(query, args).fetchall()

    def count_devices(self, f: Filter) -> int:
        where, params = self._device_where(f)
        row = self._conn.execute(sql.SQL("SELECT count(*) FROM devices d WHERE {}").format(where), params).fetchone()
        return int(row[0]) if row else 0

    def list_devices(self, f: Filter, page: PageRequest | None) -> tuple[list[Device], int]:
        rows = self._device_rows(f, page, "d.id, d.label, d.created, d.updated, d.disabled")
        devices: list[Device] = []
        for part in _chunks(rows):
            devices += self._assemble(part)
        return devices, (self.count_devices(f) if page is not None else len(devices))

    def list_device_ids(self, f: Filter, page: PageRequest | None) -> list[str]:
        return [r[0] for r in self._device_rows(f, page, "d.id")]

    def delete_devices(self, ids: list[str] | None) -> list[str]:
        """Delete these devices (all of the tenant's with None); returns the ids deleted."""
        if ids is None:
            cur = self._conn.execute("DELETE FROM devices WHERE tenant = %s RETURNING id", (self.tenant,))
        else:
            cur = self._conn.execute(
                "DELETE FROM devices WHERE tenant = %s AND id = ANY(%s) RETURNING id", (self.tenant, ids)
            )
        return [r[0] for r in cur.fetchall()]

    def _assemble(self, rows: list[tuple[Any, ...]]) -> list[Device]:
        """Devices from rows of (id, label, created, updated, disabled)."""
        if not rows:
            return []
        ids = [r[0] for r in rows]
        links: dict[str, list[int]] = {i: [] for i in ids}
        for device_id, template_id in self._conn.execute(
            """SELECT device_id, template_id FROM device_templates
               WHERE tenant = %s AND device_id = ANY(%s) ORDER BY device_id, position""",
            (self.tenant, ids),
        ):
            links[device_id].append(int(template_id))
        overrides: dict[str, dict[int, Any]] = {}
        for device_id, attr_id, value in self._conn.execute(
            "SELECT device_id, attr_id, static_value FROM device_overrides WHERE tenant = %s AND device_id = ANY(%s)",
            (self.tenant, ids),
        ):
            overrides.setdefault(device_id, {})[int(attr_id)] = value
        templates = self.get_templates(sorted({t for ts in links.values() for t in ts}))
        # Each statement reads what was committed before it: a device removed with its template between the
        # statements above (another transaction, or a tenant purge) is left out rather than half assembled.
        return [
            Device(r[0], r[1], r[2], tuple(templates[t] for t in links[r[0]]), overrides.get(r[0], {}), r[3], r[4])
            for r in rows
            if all(t in templates for t in links[r[0]])
        ]

    # -- import backups ------------------------------------------------------------------------------------
    def save_backup(self, document: dict[str, Any], keep: int) -> None:
        """Store ``document`` as the tenant's newest import backup; only the newest ``keep`` stay."""
        self._conn.execute(
            "INSERT INTO import_backups (tenant, created, document) VALUES (%s, now(), %s)",
            (self.tenant, Jsonb(document)),
        )
        self._conn.execute(
            """DELETE FROM import_backups WHERE tenant = %s AND seq NOT IN
               (SELECT seq FROM import_backups WHERE tenant = %s ORDER BY seq DESC LIMIT %s)""",
            (self.tenant, self.tenant, keep),
        )

    def latest_backup(self) -> tuple[dt.datetime, dict[str, Any]] | None:
        row = self._conn.execute(
            "SELECT created, document FROM import_backups WHERE tenant = %s ORDER BY seq DESC LIMIT 1",
            (self.tenant,),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    # -- outbox --------------------------------------------------------------------------------------------
    def add_events(self, topic: str, events: list[tuple[str, bytes]]) -> None:
        """Queue (key, payload) messages for the relay; they are published only if this transaction commits."""
        if not events:
            return
        # Held until commit: outbox sequence numbers are then assigned in commit order, so the relay
        # never publishes a later change before an earlier one.
        self._conn.execute("SELECT pg_advisory_xact_lock(%s), pg_notify(%s, '')", (OUTBOX_WRITE_LOCK, OUTBOX_CHANNEL))
        for part in _chunks(events, 5000):
            self._conn.execute(
                """INSERT INTO outbox (tenant, topic, key, payload)
                   SELECT %s, %s, u.k, u.p FROM unnest(%s::text[], %s::bytea[]) WITH ORDINALITY AS u(k, p, n)
                   ORDER BY u.n""",
                (self.tenant, topic, [k for k, _ in part], [p for _, p in part]),
            )


def _positions(attrs: list[Attr]) -> Iterator[tuple[int, Attr]]:
    """Each attribute with its position in its template."""
    seen: dict[int, int] = {}
    for a in attrs:
        pos = seen.get(a.template_id, 0)
        seen[a.template_id] = pos + 1
        yield pos, a


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
