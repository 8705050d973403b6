"""PostgreSQL storage of certificates, trusted CAs, revocations, the audit trail, the CRL and the event outbox
(psycopg 3 + psycopg_pool).

Tenant isolation lives here: every table but the CRL's has a ``tenant`` column, a transaction is bound to one
tenant when it is opened (:meth:`PostgresStore.transaction`), and every query of :class:`PostgresTx` filters by
that tenant; the service never writes a tenant condition itself. A certificate's fingerprint is unique across
tenants (a certificate identifies one device of one tenant), a trusted CA's only within its tenant (two tenants
may trust the same public CA). The CRL is the platform's (the issuing CA's), so it lists the revoked serials of
every tenant. Driver errors are translated into the platform's error hierarchy.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from ondas.errors import Conflict, Invalid, Unavailable
from ondas.tenant import validate_tenant
from x509_mgmt.models import CertificateRecord, Condition, PageRequest, TrustedCa

log = logging.getLogger("x509_mgmt.store")

OUTBOX_CHANNEL = "x509_mgmt_outbox"
# Advisory lock keys (64-bit), one per purpose.
MIGRATE_LOCK = 0x0E_09_0001
OUTBOX_WRITE_LOCK = 0x0E_09_0002
RELAY_LOCK = 0x0E_09_0003

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS certificates (
        fingerprint text PRIMARY KEY, tenant text NOT NULL, serial text NOT NULL, pem text NOT NULL,
        subject_dn text NOT NULL, not_before timestamptz NOT NULL, not_after timestamptz NOT NULL,
        issued_by_platform boolean NOT NULL, auto_registered boolean NOT NULL, ca_fingerprint text,
        belongs_to jsonb NOT NULL, device_id text GENERATED ALWAYS AS (belongs_to ->> 'device') STORED,
        created_at timestamptz NOT NULL, modified_at timestamptz NOT NULL, created_by text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS certificates_by_tenant ON certificates (tenant, fingerprint)",
    "CREATE INDEX IF NOT EXISTS certificates_by_device ON certificates (tenant, device_id)",
    "CREATE INDEX IF NOT EXISTS certificates_by_ca ON certificates (tenant, ca_fingerprint)",
    # Serials the issuing CA revoked (the CRL's content), kept until the certificate would have expired.
    """CREATE TABLE IF NOT EXISTS revocations (
        serial text PRIMARY KEY, tenant text NOT NULL, fingerprint text NOT NULL, device_id text,
        not_after timestamptz NOT NULL, revoked_at timestamptz NOT NULL, revoked_by text NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS revocations_by_tenant ON revocations (tenant, revoked_at)",
    """CREATE TABLE IF NOT EXISTS trusted_cas (
        tenant text NOT NULL, fingerprint text NOT NULL, pem text NOT NULL, subject_dn text NOT NULL,
        not_before timestamptz NOT NULL, not_after timestamptz NOT NULL, allow_auto_registration boolean NOT NULL,
        created_at timestamptz NOT NULL, modified_at timestamptz NOT NULL, created_by text NOT NULL,
        PRIMARY KEY (tenant, fingerprint))""",
    # Who did what, when: every issue, registration, revocation, owner change and trusted CA change.
    """CREATE TABLE IF NOT EXISTS audit (
        seq bigserial PRIMARY KEY, tenant text NOT NULL, at timestamptz NOT NULL, actor text NOT NULL,
        action text NOT NULL, fingerprint text NOT NULL, serial text, device_id text, detail jsonb)""",
    "CREATE INDEX IF NOT EXISTS audit_by_tenant ON audit (tenant, fingerprint, seq)",
    """CREATE TABLE IF NOT EXISTS outbox (
        seq bigserial PRIMARY KEY, tenant text NOT NULL, topic text NOT NULL, key text NOT NULL,
        payload bytea NOT NULL, created timestamptz NOT NULL DEFAULT now())""",
    # The platform's one CRL: revision counts revocations, built_revision is the revision the stored CRL lists.
    """CREATE TABLE IF NOT EXISTS crl_state (
        id int PRIMARY KEY CHECK (id = 1), number bigint NOT NULL, revision bigint NOT NULL,
        built_revision bigint NOT NULL, pem text, this_update timestamptz, next_update timestamptz)""",
    "INSERT INTO crl_state (id, number, revision, built_revision) VALUES (1, 0, 0, -1) ON CONFLICT (id) DO NOTHING",
)


@contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        raise Conflict(f"already registered ({exc.diag.constraint_name or exc.diag.message_primary})") from exc
    except psycopg.errors.IntegrityError as exc:
        raise Conflict(
            f"the change conflicts with a concurrent one; retry it ({exc.diag.message_primary or exc})"
        ) from exc
    except psycopg.DataError as exc:
        raise Invalid(f"a value in the request cannot be stored: {exc.diag.message_primary or exc}") from exc
    except psycopg.OperationalError as exc:
        raise Unavailable(f"the certificate database is unavailable: {exc}") from exc


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    tenant: str
    topic: str
    key: str
    payload: bytes


@dataclass(frozen=True)
class CrlState:
    number: int
    revision: int
    built_revision: int
    pem: str | None
    this_update: dt.datetime | None
    next_update: dt.datetime | None


_CERT_COLUMNS = (
    "tenant, fingerprint, pem, serial, subject_dn, not_before, not_after, issued_by_platform, auto_registered, "
    "ca_fingerprint, belongs_to, created_at, modified_at, created_by"
)
_CA_COLUMNS = (
    "tenant, fingerprint, pem, subject_dn, not_before, not_after, allow_auto_registration, created_at, "
    "modified_at, created_by"
)
# dojot filter key -> SQL expression
_CERT_FILTER_COLUMNS = {
    "fingerprint": "fingerprint",
    "subjectDN": "subject_dn",
    "serialNumber": "upper(serial)",
    "caFingerprint": "ca_fingerprint",
    "belongsTo.device": "device_id",
    "issuedByDojotPki": "issued_by_platform",
    "autoRegistered": "auto_registered",
    "createdAt": "created_at",
    "modifiedAt": "modified_at",
}
_CA_FILTER_COLUMNS = {
    "caFingerprint": "fingerprint",
    "subjectDN": "subject_dn",
    "allowAutoRegistration": "allow_auto_registration",
    "createdAt": "created_at",
    "modifiedAt": "modified_at",
}


def _cert(row: tuple[Any, ...]) -> CertificateRecord:
    return CertificateRecord(
        tenant=row[0],
        fingerprint=row[1],
        pem=row[2],
        serial=row[3],
        subject_dn=row[4],
        not_before=row[5],
        not_after=row[6],
        issued_by_platform=row[7],
        auto_registered=row[8],
        ca_fingerprint=row[9],
        belongs_to=dict(row[10]),
        created_at=row[11],
        modified_at=row[12],
        created_by=row[13],
    )


def _ca(row: tuple[Any, ...]) -> TrustedCa:
    return TrustedCa(
        tenant=row[0],
        fingerprint=row[1],
        pem=row[2],
        subject_dn=row[3],
        not_before=row[4],
        not_after=row[5],
        allow_auto_registration=row[6],
        created_at=row[7],
        modified_at=row[8],
        created_by=row[9],
    )


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(tenant: str, conditions: list[Condition], columns: dict[str, str]) -> tuple[sql.Composable, list[Any]]:
    parts: list[sql.Composable] = [sql.SQL("tenant = %s")]
    args: list[Any] = [tenant]
    for c in conditions:
        if c.key == "tenant":
            if c.value != tenant:
                parts.append(sql.SQL("FALSE"))
            continue
        col = sql.SQL(columns[c.key])
        if c.op == "eq":
            parts.append(sql.SQL("{} = %s").format(col))
            args.append(c.value)
        elif c.op == "ne":
            parts.append(sql.SQL("{} IS DISTINCT FROM %s").format(col))
            args.append(c.value)
        elif c.op in ("prefix", "suffix", "contains"):
            pattern = _like(str(c.value))
            pattern = {"prefix": f"{pattern}%", "suffix": f"%{pattern}", "contains": f"%{pattern}%"}[c.op]
            parts.append(
                sql.SQL("{} ILIKE %s").format(col) if c.op == "contains" else sql.SQL("{} LIKE %s").format(col)
            )
            args.append(pattern)
        else:
            operator = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[c.op]
            parts.append(sql.SQL("{} {} %s").format(col, sql.SQL(operator)))
            args.append(c.value)
    return sql.SQL(" AND ").join(parts), args


class PostgresStore:
    """The :class:`x509_mgmt.service.Store` on PostgreSQL."""

    def __init__(self, url: str, max_connections: int = 10, timeout: float = 10.0) -> None:
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            timeout=timeout,
            open=True,
            check=ConnectionPool.check_connection,
            name="x509-mgmt",
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
    def transaction(self, tenant: str) -> Iterator[PostgresTx]:
        """One transaction that sees and changes only ``tenant``'s rows."""
        tenant = validate_tenant(tenant)
        with translate_errors(), self._pool.connection() as conn, conn.transaction():
            yield PostgresTx(conn, tenant)

    # -- the CRL (platform-wide) ------------------------------------------------------------------------------
    def crl_state(self) -> CrlState:
        with translate_errors(), self._pool.connection() as conn:
            return _crl_state(conn, lock=False)

    @contextmanager
    def crl_update(self) -> Iterator[CrlUpdate]:
        """A transaction holding the CRL row's lock: one process at a time rebuilds the CRL."""
        with translate_errors(), self._pool.connection() as conn, conn.transaction():
            yield CrlUpdate(conn, _crl_state(conn, lock=True))

    def device_trust(self) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
        """What the device listeners trust beyond the platform CAs (platform-wide, for the trust file): every
        tenant's trusted CAs ``(tenant, pem)`` and every external certificate that belongs to a device
        ``(fingerprint, tenant, device)``, in a stable order."""
        with translate_errors(), self._pool.connection() as conn:
            cas = conn.execute("SELECT tenant, pem FROM trusted_cas ORDER BY tenant, fingerprint").fetchall()
            certs = conn.execute(
                "SELECT fingerprint, tenant, device_id FROM certificates"
                " WHERE NOT issued_by_platform AND device_id IS NOT NULL ORDER BY fingerprint"
            ).fetchall()
        return [(str(t), str(p)) for t, p in cas], [(str(f), str(t), str(d)) for f, t, d in certs]

    def purge_expired_revocations(self, now: dt.datetime) -> int:
        """Forget revocations of certificates that have expired (a CRL need not list them)."""
        with translate_errors(), self._pool.connection() as conn:
            return conn.execute("DELETE FROM revocations WHERE not_after < %s", (now,)).rowcount

    def purge_tenant(self, tenant: str, created_before: dt.datetime | None = None) -> dict[str, int]:
        """Remove a deleted tenant's certificates, trusted CAs and queued events, in one transaction; the
        certificates the platform issued to it go on the CRL first (they would still verify otherwise). With
        ``created_before`` (the tenant exists again) only what was created before that instant goes. The audit
        trail stays."""
        tenant = validate_tenant(tenant)
        cutoff = created_before or dt.datetime.max.replace(tzinfo=dt.UTC)
        args = (tenant, cutoff)
        with translate_errors(), self._pool.connection() as conn, conn.transaction():
            revoked = conn.execute(
                """INSERT INTO revocations (serial, tenant, fingerprint, device_id, not_after, revoked_at, revoked_by)
                   SELECT serial, tenant, fingerprint, device_id, not_after, now(), 'tenant-deleted'
                   FROM certificates WHERE tenant = %s AND created_at < %s AND issued_by_platform
                   ON CONFLICT (serial) DO NOTHING""",
                args,
            ).rowcount
            if revoked:
                conn.execute("UPDATE crl_state SET revision = revision + 1 WHERE id = 1")
            return {
                "revoked": revoked,
                "certificates": conn.execute(
                    "DELETE FROM certificates WHERE tenant = %s AND created_at < %s", args
                ).rowcount,
                "trusted_cas": conn.execute(
                    "DELETE FROM trusted_cas WHERE tenant = %s AND created_at < %s", args
                ).rowcount,
                "events": conn.execute("DELETE FROM outbox WHERE tenant = %s AND created < %s", args).rowcount,
            }


def _crl_state(conn: psycopg.Connection[Any], lock: bool) -> CrlState:
    query = "SELECT number, revision, built_revision, pem, this_update, next_update FROM crl_state WHERE id = 1"
    row = conn.execute(query + (" FOR UPDATE" if lock else "")).fetchone()
    if row is None:
        raise Unavailable("the certificate database is not migrated (no CRL state)")
    return CrlState(int(row[0]), int(row[1]), int(row[2]), row[3], row[4], row[5])


class CrlUpdate:
    def __init__(self, conn: psycopg.Connection[Any], state: CrlState) -> None:
        self._conn = conn
        self.state = state

    def revoked(self) -> list[tuple[int, dt.datetime]]:
        rows = self._conn.execute("SELECT serial, revoked_at FROM revocations ORDER BY revoked_at, serial").fetchall()
        return [(int(r[0], 16), r[1]) for r in rows]

    def store(
        self, number: int, built_revision: int, pem: str, this_update: dt.datetime, next_update: dt.datetime
    ) -> None:
        self._conn.execute(
            """UPDATE crl_state SET number = %s, built_revision = %s, pem = %s, this_update = %s, next_update = %s
               WHERE id = 1""",
            (number, built_revision, pem, this_update, next_update),
        )


class PostgresTx:
    """Every query is scoped to the tenant the transaction was opened for."""

    def __init__(self, conn: psycopg.Connection[Any], tenant: str) -> None:
        self._conn = conn
        self.tenant = tenant

    # -- certificates ------------------------------------------------------------------------------------------
    def insert_certificate(self, cert: CertificateRecord) -> None:
        if cert.tenant != self.tenant:
            raise ValueError("a certificate of another tenant")
        try:
            with self._conn.transaction():
                self._conn.execute(
                    f"INSERT INTO certificates ({_CERT_COLUMNS}) VALUES "  # noqa: S608 (constant column list)
                    "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        cert.tenant,
                        cert.fingerprint,
                        cert.pem,
                        cert.serial,
                        cert.subject_dn,
                        cert.not_before,
                        cert.not_after,
                        cert.issued_by_platform,
                        cert.auto_registered,
                        cert.ca_fingerprint,
                        Jsonb(cert.belongs_to),
                        cert.created_at,
                        cert.modified_at,
                        cert.created_by,
                    ),
                )
        except psycopg.errors.UniqueViolation as exc:
            raise Invalid("the certificate has been registered already", fingerprint=cert.fingerprint) from exc

    def get_certificate(self, fingerprint: str, lock: bool = False) -> CertificateRecord | None:
        row = self._conn.execute(
            f"SELECT {_CERT_COLUMNS} FROM certificates WHERE tenant = %s AND fingerprint = %s"  # noqa: S608
            + (" FOR UPDATE" if lock else ""),
            (self.tenant, fingerprint),
        ).fetchone()
        return _cert(row) if row else None

    def list_certificates(self, conditions: list[Condition], page: PageRequest) -> tuple[list[CertificateRecord], int]:
        where, args = _where(self.tenant, conditions, _CERT_FILTER_COLUMNS)
        total_row = self._conn.execute(
            sql.SQL("SELECT count(*) FROM certificates WHERE {}").format(where), args
        ).fetchone()
        total = int(total_row[0]) if total_row else 0
        rows = self._conn.execute(
            sql.SQL("SELECT {} FROM certificates WHERE {} ORDER BY fingerprint LIMIT %s OFFSET %s").format(
                sql.SQL(_CERT_COLUMNS), where
            ),
            [*args, page.limit, (page.page - 1) * page.limit],
        ).fetchall()
        return [_cert(r) for r in rows], total

    def delete_certificate(self, fingerprint: str) -> None:
        self._conn.execute(
            "DELETE FROM certificates WHERE tenant = %s AND fingerprint = %s", (self.tenant, fingerprint)
        )

    def set_belongs_to(self, fingerprint: str, belongs_to: dict[str, Any], at: dt.datetime) -> None:
        self._conn.execute(
            "UPDATE certificates SET belongs_to = %s, modified_at = %s WHERE tenant = %s AND fingerprint = %s",
            (Jsonb(belongs_to), at, self.tenant, fingerprint),
        )

    def certificates_of_ca(self, ca_fingerprint: str, auto_registered: bool | None = None) -> list[CertificateRecord]:
        query = f"SELECT {_CERT_COLUMNS} FROM certificates WHERE tenant = %s AND ca_fingerprint = %s"  # noqa: S608
        args: list[Any] = [self.tenant, ca_fingerprint]
        if auto_registered is not None:
            query += " AND auto_registered = %s"
            args.append(auto_registered)
        return [_cert(r) for r in self._conn.execute(query + " ORDER BY fingerprint", args).fetchall()]

    def certificates_of_device(self, device_id: str) -> list[CertificateRecord]:
        rows = self._conn.execute(
            f"SELECT {_CERT_COLUMNS} FROM certificates WHERE tenant = %s AND device_id = %s "  # noqa: S608
            "ORDER BY fingerprint FOR UPDATE",
            (self.tenant, device_id),
        ).fetchall()
        return [_cert(r) for r in rows]

    def record_revocation(self, cert: CertificateRecord, at: dt.datetime, actor: str) -> None:
        """Put a platform-issued certificate's serial on the CRL (idempotent) and mark the CRL stale."""
        self._conn.execute(
            """INSERT INTO revocations (serial, tenant, fingerprint, device_id, not_after, revoked_at, revoked_by)
               VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (serial) DO NOTHING""",
            (cert.serial, self.tenant, cert.fingerprint, cert.device_id, cert.not_after, at, actor),
        )
        self._conn.execute("UPDATE crl_state SET revision = revision + 1 WHERE id = 1")

    # -- trusted CAs -------------------------------------------------------------------------------------------
    def insert_trusted_ca(self, ca: TrustedCa, limit: int) -> None:
        if ca.tenant != self.tenant:
            raise ValueError("a CA of another tenant")
        if limit >= 0:
            # Serialise the tenant's registrations so the limit holds under concurrency.
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext('x509-trusted-cas:' || %s))", (self.tenant,))
            row = self._conn.execute("SELECT count(*) FROM trusted_cas WHERE tenant = %s", (self.tenant,)).fetchone()
            if row and int(row[0]) >= limit:
                raise Invalid(f"a tenant may register at most {limit} trusted CA certificates")
        try:
            with self._conn.transaction():
                self._conn.execute(
                    f"INSERT INTO trusted_cas ({_CA_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",  # noqa: S608
                    (
                        ca.tenant,
                        ca.fingerprint,
                        ca.pem,
                        ca.subject_dn,
                        ca.not_before,
                        ca.not_after,
                        ca.allow_auto_registration,
                        ca.created_at,
                        ca.modified_at,
                        ca.created_by,
                    ),
                )
        except psycopg.errors.UniqueViolation as exc:
            raise Invalid("the CA certificate has been registered already", caFingerprint=ca.fingerprint) from exc

    def get_trusted_ca(self, fingerprint: str, lock: bool = False) -> TrustedCa | None:
        row = self._conn.execute(
            f"SELECT {_CA_COLUMNS} FROM trusted_cas WHERE tenant = %s AND fingerprint = %s"  # noqa: S608
            + (" FOR UPDATE" if lock else ""),
            (self.tenant, fingerprint),
        ).fetchone()
        return _ca(row) if row else None

    def trusted_cas(self) -> list[TrustedCa]:
        rows = self._conn.execute(
            f"SELECT {_CA_COLUMNS} FROM trusted_cas WHERE tenant = %s ORDER BY fingerprint",  # noqa: S608
            (self.tenant,),
        ).fetchall()
        return [_ca(r) for r in rows]

    def list_trusted_cas(self, conditions: list[Condition], page: PageRequest) -> tuple[list[TrustedCa], int]:
        where, args = _where(self.tenant, conditions, _CA_FILTER_COLUMNS)
        total_row = self._conn.execute(
            sql.SQL("SELECT count(*) FROM trusted_cas WHERE {}").format(where), args
        ).fetchone()
        total = int(total_row[0]) if total_row else 0
        rows = self._conn.execute(
            sql.SQL("SELECT {} FROM trusted_cas WHERE {} ORDER BY fingerprint LIMIT %s OFFSET %s").format(
                sql.SQL(_CA_COLUMNS), where
            ),
            [*args, page.limit, (page.page - 1) * page.limit],
        ).fetchall()
        return [_ca(r) for r in rows], total

    def set_auto_registration(self, fingerprint: str, allow: bool, at: dt.datetime) -> None:
        self._conn.execute(
            """UPDATE trusted_cas SET allow_auto_registration = %s, modified_at = %s
               WHERE tenant = %s AND fingerprint = %s""",
            (allow, at, self.tenant, fingerprint),
        )

    def delete_trusted_ca(self, fingerprint: str) -> None:
        self._conn.execute("DELETE FROM trusted_cas WHERE tenant = %s AND fingerprint = %s", (self.tenant, fingerprint))

    # -- audit and events ---------------------------------------------------------------------------------------
    def audit(
        self,
        at: dt.datetime,
        actor: str,
        action: str,
        fingerprint: str,
        serial: str | None = None,
        device_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self._conn.execute(
            """INSERT INTO audit (tenant, at, actor, action, fingerprint, serial, device_id, detail)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            (self.tenant, at, actor, action, fingerprint, serial, device_id, Jsonb(detail) if detail else None),
        )

    def audit_trail(self, fingerprint: str) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            """SELECT at, actor, action, serial, device_id, detail FROM audit
               WHERE tenant = %s AND fingerprint = %s ORDER BY seq""",
            (self.tenant, fingerprint),
        ).fetchall()
        return [
            {"at": r[0], "actor": r[1], "action": r[2], "serial": r[3], "device_id": r[4], "detail": r[5]} for r in rows
        ]

    def enqueue(self, topic: str, key: str, payload: bytes) -> None:
        """Queue an event, published by the relay after this transaction commits. The write lock keeps the
        outbox's order the order of the commits."""
        self._conn.execute("SELECT pg_advisory_xact_lock(%s), pg_notify(%s, '')", (OUTBOX_WRITE_LOCK, OUTBOX_CHANNEL))
        self._conn.execute(
            "INSERT INTO outbox (tenant, topic, key, payload) VALUES (%s, %s, %s, %s)",
            (self.tenant, topic, key, payload),
        )


# -- the outbox relay's queries (any tenant: it publishes everything, in order) ------------------------------------
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
