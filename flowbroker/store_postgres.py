"""PostgreSQL storage of the flows (psycopg 3 + psycopg_pool). Tenant isolation lives here: the ``tenant`` column
is part of the key and every query filters by the tenant it is given. Driver errors become the platform's errors."""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from flowbroker.models import Flow
from ondas.errors import Conflict, Invalid, Unavailable
from ondas.tenant import validate_tenant

MIGRATE_LOCK = 0x0F_10_0001

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS flows (
        tenant text NOT NULL, id text NOT NULL, name text NOT NULL, enabled boolean NOT NULL,
        flow jsonb NOT NULL, created bigint NOT NULL, updated bigint NOT NULL,
        PRIMARY KEY (tenant, id))""",
    "CREATE INDEX IF NOT EXISTS flows_by_created ON flows (tenant, created, id)",
)

_COLUMNS = "id, name, enabled, flow, created, updated"


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.errors.IntegrityError as exc:
        raise Conflict(f"the change conflicts with a concurrent one; retry it ({exc.diag.message_primary})") from exc
    except psycopg.DataError as exc:
        raise Invalid(f"a value in the request cannot be stored: {exc.diag.message_primary or exc}") from exc
    except psycopg.OperationalError as exc:
        raise Unavailable(f"the flow database is unavailable: {exc}") from exc


def _flow(row: tuple[Any, ...]) -> Flow:
    return Flow(id=row[0], name=row[1], enabled=row[2], flow=row[3], created=row[4], updated=row[5])


class PostgresStore:
    def __init__(self, url: str, max_connections: int = 8, timeout: float = 10.0) -> None:
        self._pool = ConnectionPool(
            url, min_size=1, max_size=max_connections, timeout=timeout, open=True, name="flowbroker"
        )

    def close(self) -> None:
        self._pool.close()

    def migrate(self) -> None:
        with translate_errors(), self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            for statement in SCHEMA:
                conn.execute(statement)

    def ping(self) -> bool:
        with self._pool.connection(timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def insert(self, tenant: str, flow: Flow) -> None:
        with translate_errors(), self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO flows (tenant, id, name, enabled, flow, created, updated) VALUES (%s,%s,%s,%s,%s,%s,%s)",
                (
                    validate_tenant(tenant),
                    flow.id,
                    flow.name,
                    flow.enabled,
                    Jsonb(flow.flow),
                    flow.created,
                    flow.updated,
                ),
            )

    def get(self, tenant: str, flow_id: str) -> Flow | None:
        with translate_errors(), self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM flows WHERE tenant = %s AND id = %s",  # noqa: S608 - constant columns
                (validate_tenant(tenant), flow_id),
            ).fetchone()
        return None if row is None else _flow(row)

    def list(self, tenant: str) -> list[Flow]:
        with translate_errors(), self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM flows WHERE tenant = %s ORDER BY created, id",  # noqa: S608
                (validate_tenant(tenant),),
            ).fetchall()
        return [_flow(r) for r in rows]

    def replace(self, tenant: str, flow: Flow) -> Flow | None:
        """Replace name, enabled and nodes of an existing flow; None when there is none."""
        with translate_errors(), self._pool.connection() as conn:
            row = conn.execute(
                f"""UPDATE flows SET name = %s, enabled = %s, flow = %s, updated = %s
                    WHERE tenant = %s AND id = %s RETURNING {_COLUMNS}""",  # noqa: S608
                (flow.name, flow.enabled, Jsonb(flow.flow), flow.updated, validate_tenant(tenant), flow.id),
            ).fetchone()
        return None if row is None else _flow(row)

    def delete(self, tenant: str, flow_id: str) -> Flow | None:
        with translate_errors(), self._pool.connection() as conn:
            row = conn.execute(
                f"DELETE FROM flows WHERE tenant = %s AND id = %s RETURNING {_COLUMNS}",  # noqa: S608
                (validate_tenant(tenant), flow_id),
            ).fetchone()
        return None if row is None else _flow(row)

    def delete_all(self, tenant: str) -> int:
        with translate_errors(), self._pool.connection() as conn:
            return conn.execute("DELETE FROM flows WHERE tenant = %s", (validate_tenant(tenant),)).rowcount

    def purge_tenant(self, tenant: str, created_before_ms: int | None = None) -> int:
        """Remove a deleted tenant's flows (only those created before ``created_before_ms`` when given: the tenant
        exists again and its new flows stay)."""
        with translate_errors(), self._pool.connection() as conn:
            if created_before_ms is None:
                cur = conn.execute("DELETE FROM flows WHERE tenant = %s", (validate_tenant(tenant),))
            else:
                cur = conn.execute(
                    "DELETE FROM flows WHERE tenant = %s AND created < %s", (validate_tenant(tenant), created_before_ms)
                )
            return cur.rowcount

    def enabled_flows(self, tenants: builtins.list[str]) -> dict[str, builtins.list[Flow]]:
        """The enabled flows of each of ``tenants`` (what the workers run)."""
        if not tenants:
            return {}
        with translate_errors(), self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT tenant, {_COLUMNS} FROM flows WHERE enabled AND tenant = ANY(%s) ORDER BY created, id",  # noqa: S608
                ([validate_tenant(t) for t in tenants],),
            ).fetchall()
        result: dict[str, builtins.list[Flow]] = {t: [] for t in tenants}
        for row in rows:
            result[row[0]].append(_flow(row[1:]))
        return result
