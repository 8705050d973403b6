"""Tenants, users, groups, permissions and their relations in PostgreSQL, and the tenancy outbox.

Every query about users, groups or permissions names the tenant (``service``): a row of another tenant is
never read, changed or counted, so "not found" is all a caller ever learns about another tenant's rows.

Creating or deleting a tenant writes its tenancy event to ``tenancy_outbox`` in the same transaction; the relay
(:mod:`auth.events`) publishes it. The schema is created and migrated at start (``SCHEMA``: every statement is
idempotent, so a database of an earlier version gets the tables it lacks, the outbox among them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from auth.models import (
    CATALOGUE,
    DEFAULT_GRANTS,
    DEFAULT_GROUP_DESCRIPTIONS,
    FIRST_CUSTOM_PERMISSION_ID,
    RESERVED_PERMISSION_IDS,
    Group,
    Permission,
    PermissionSpec,
    User,
)
from ondas.errors import Conflict, Invalid, NotFound

SCHEMA = """
SELECT pg_advisory_xact_lock(827364501);
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- The id the tenant's next own permission gets (permission ids are numbered per tenant).
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS next_permission_id BIGINT NOT NULL DEFAULT 23;
CREATE TABLE IF NOT EXISTS users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    service TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    profile TEXT NOT NULL DEFAULT 'user',
    password_hash TEXT NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Usernames are unique per tenant (the first version had them unique platform-wide).
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_username_key;
ALTER TABLE users ADD COLUMN IF NOT EXISTS token_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN IF NOT EXISTS created_by TEXT NOT NULL DEFAULT '0';
CREATE UNIQUE INDEX IF NOT EXISTS users_service_username ON users (service, username);
CREATE INDEX IF NOT EXISTS users_username ON users (username);
CREATE TABLE IF NOT EXISTS password_history (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS password_history_user ON password_history (user_id, created DESC);
CREATE TABLE IF NOT EXISTS groups (
    id BIGSERIAL PRIMARY KEY,
    service TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    UNIQUE (service, name)
);
-- ``id`` is the permission's number within its tenant (the same catalogue ids in every tenant); ``pk`` is the
-- row's key, which the relations refer to. Databases of the versions before have ``id`` as the key of one
-- platform-wide sequence: ``_migrate_permission_ids`` converts them.
CREATE TABLE IF NOT EXISTS permissions (
    pk BIGSERIAL PRIMARY KEY,
    service TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    method TEXT NOT NULL,
    permission TEXT NOT NULL CHECK (permission IN ('permit', 'deny')),
    type TEXT NOT NULL DEFAULT 'api' CHECK (type IN ('api', 'system')),
    UNIQUE (service, name),
    CONSTRAINT permissions_service_id_key UNIQUE (service, id)
);
CREATE TABLE IF NOT EXISTS user_groups (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);
CREATE TABLE IF NOT EXISTS group_permissions (
    group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    permission_id BIGINT NOT NULL REFERENCES permissions(pk) ON DELETE CASCADE,
    PRIMARY KEY (group_id, permission_id)
);
CREATE TABLE IF NOT EXISTS user_permissions (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    permission_id BIGINT NOT NULL REFERENCES permissions(pk) ON DELETE CASCADE,
    PRIMARY KEY (user_id, permission_id)
);
CREATE TABLE IF NOT EXISTS password_resets (
    token_hash TEXT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked_tokens (
    jti TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
-- The tenancy events of committed tenant changes, in commit order, until the relay has published them (auth.events).
-- ``topics_ready``: a CREATE's topics were made (a former tenant's deleted first); ``sent``: the broker accepted it.
CREATE TABLE IF NOT EXISTS tenancy_outbox (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('CREATE', 'DELETE')),
    tenant TEXT NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    topics_ready BOOLEAN NOT NULL DEFAULT false,
    sent TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS tenancy_outbox_pending ON tenancy_outbox (seq) WHERE sent IS NULL;
"""

#: Held (per session) by the one relay that publishes the outbox at a time.
RELAY_LOCK = 827364502
#: Taken by every transaction that writes the outbox, until it commits: sequence numbers then follow commit order,
#: so the relay never publishes a later change before an earlier one.
OUTBOX_WRITE_LOCK = 827364503
#: How long published rows are kept (for inspection) before they are removed.
SENT_RETENTION_DAYS = 7


def _user_cols(alias: str = "") -> str:
    a = f"{alias}." if alias else ""
    plain = ", ".join(
        a + c for c in ("id", "username", "service", "profile", "name", "email", "password_hash", "token_version")
    )
    return f"{plain}, {a}created_by, to_char({a}created AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS created_date"


def _perm_cols(alias: str = "") -> str:
    a = f"{alias}." if alias else ""
    return ", ".join(a + c for c in ("id", "service", "name", "path", "method", "permission", "type", "pk"))


_COLUMNS: dict[str, sql.Composable] = {
    "u": sql.SQL(_user_cols()),
    "ua": sql.SQL(_user_cols("u")),
    "p": sql.SQL(_perm_cols()),
    "pa": sql.SQL(_perm_cols("p")),
}


class _Cursor:
    """A cursor whose queries may name the column lists ``{u}``, ``{ua}``, ``{p}``, ``{pa}`` and further
    composable parts (identifiers, clauses), so no query is built by string formatting."""

    def __init__(self, cur: psycopg.Cursor[dict[str, Any]]) -> None:
        self._cur = cur

    def execute(
        self, query: LiteralString, args: Sequence[Any] = (), **parts: sql.Composable
    ) -> psycopg.Cursor[dict[str, Any]]:
        composed = sql.SQL(query).format(**_COLUMNS, **parts) if "{" in query else sql.SQL(query)
        return self._cur.execute(composed, args)


def _user(row: dict[str, Any] | None) -> User | None:
    return User(**row) if row else None


def _perm(row: dict[str, Any]) -> Permission:
    return Permission(**row)


#: The default permissions of the versions before, whose rows take their catalogue ids on migration (when unedited):
#: (old name, catalogue id). ``all_access`` is dojot's ``all_all`` under another name.
_LEGACY_DEFAULTS = (("all_access", 1), ("read_all", 1000), ("actuate_devices", 1001), ("no_access_control", 1002))


def _allocate_permission_id(cur: _Cursor, tenant: str) -> int:
    """The next id of a tenant's own permission (from 23 up, never one used before, never in the block reserved
    for Ondas's catalogue); the tenant row stays locked until the transaction ends."""
    row = cur.execute("SELECT next_permission_id FROM tenants WHERE name = %s FOR UPDATE", (tenant,)).fetchone()
    if row is None:
        raise NotFound("no such tenant")
    pid = max(int(row["next_permission_id"]), FIRST_CUSTOM_PERMISSION_ID)
    while True:
        if pid in RESERVED_PERMISSION_IDS:
            pid = RESERVED_PERMISSION_IDS.stop
        if cur.execute("SELECT 1 FROM permissions WHERE service = %s AND id = %s", (tenant, pid)).fetchone() is None:
            break
        pid += 1
    cur.execute("UPDATE tenants SET next_permission_id = %s WHERE name = %s", (pid + 1, tenant))
    return pid


def _migrate_permission_ids(cur: _Cursor) -> None:
    """Number the permissions of a database of an earlier version per tenant (there, ``id`` came from one
    platform-wide sequence). Relations keep pointing at the same rows (the old ``id`` becomes ``pk``). New ids:

    - the earlier default permissions, unedited, take their catalogue ids (``all_access`` becomes ``all_all``,
      id 1, which means the same) and become system permissions;
    - any other permission keeps its old number when that lies outside the catalogue's ids (above 22, outside
      1000-1999; old numbers were unique platform-wide, so they are free), so scripts that knew it still work;
      the others get the tenant's next own ids.

    The catalogue entries still missing are added by the next ``create_tenant`` of each tenant (at start-up)."""
    has_pk = cur.execute(
        "SELECT 1 FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = 'permissions' AND column_name = 'pk'"
    ).fetchone()
    if has_pk:
        return
    cur.execute("ALTER TABLE permissions RENAME COLUMN id TO pk")
    cur.execute("ALTER TABLE permissions ADD COLUMN id BIGINT")
    catalogue = dict(CATALOGUE)
    for old_name, new_id in _LEGACY_DEFAULTS:
        spec = catalogue[new_id]
        cur.execute(
            "UPDATE permissions p SET id = %s, name = %s, type = 'system'"
            " WHERE p.name = %s AND p.path = %s AND p.method = %s AND p.permission = %s AND NOT EXISTS"
            " (SELECT 1 FROM permissions q WHERE q.service = p.service AND q.name = %s AND q.pk <> p.pk)",
            (new_id, spec.name, old_name, spec.path, spec.method, spec.permission, spec.name),
        )
    reserved = (RESERVED_PERMISSION_IDS.start, RESERVED_PERMISSION_IDS.stop)
    cur.execute(
        "UPDATE permissions SET id = pk WHERE id IS NULL AND pk >= %s AND NOT (pk >= %s AND pk < %s)",
        (FIRST_CUSTOM_PERMISSION_ID, *reserved),
    )
    cur.execute(
        "UPDATE tenants t SET next_permission_id = GREATEST(%s, (SELECT max(p.id) + 1 FROM permissions p"
        " WHERE p.service = t.name AND NOT (p.id >= %s AND p.id < %s)))",
        (FIRST_CUSTOM_PERMISSION_ID, *reserved),
    )
    for row in cur.execute("SELECT pk, service FROM permissions WHERE id IS NULL ORDER BY service, pk").fetchall():
        cur.execute(
            "UPDATE permissions SET id = %s WHERE pk = %s", (_allocate_permission_id(cur, row["service"]), row["pk"])
        )
    cur.execute("ALTER TABLE permissions ALTER COLUMN id SET NOT NULL")
    cur.execute("ALTER TABLE permissions ADD CONSTRAINT permissions_service_id_key UNIQUE (service, id)")


def _queue_tenancy_event(cur: _Cursor, kind: str, tenant: str) -> None:
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_WRITE_LOCK,))
    cur.execute("INSERT INTO tenancy_outbox (kind, tenant) VALUES (%s, %s)", (kind, tenant))


@dataclass(frozen=True)
class OutboxEvent:
    seq: int
    kind: str
    tenant: str
    created_ms: int  # when the change was committed (epoch milliseconds)
    topics_ready: bool


# -- the relay's side of the outbox (its own autocommit connection) -----------------------------------------
def pending_tenancy_events(conn: psycopg.Connection[Any], limit: int) -> list[OutboxEvent]:
    rows = conn.execute(
        "SELECT seq, kind, tenant, (extract(epoch FROM created) * 1000)::bigint, topics_ready FROM tenancy_outbox"
        " WHERE sent IS NULL ORDER BY seq LIMIT %s",
        (limit,),
    ).fetchall()
    return [OutboxEvent(int(r[0]), r[1], r[2], int(r[3]), bool(r[4])) for r in rows]


def mark_topics_ready(conn: psycopg.Connection[Any], seq: int) -> None:
    conn.execute("UPDATE tenancy_outbox SET topics_ready = true WHERE seq = %s", (seq,))


def mark_sent(conn: psycopg.Connection[Any], seq: int) -> None:
    conn.execute("UPDATE tenancy_outbox SET sent = now() WHERE seq = %s", (seq,))


def prune_sent(conn: psycopg.Connection[Any]) -> None:
    conn.execute("DELETE FROM tenancy_outbox WHERE sent < now() - make_interval(days => %s)", (SENT_RETENTION_DAYS,))


class PostgresAuthStore:
    def __init__(self, url: str) -> None:
        self._pool = ConnectionPool(url, min_size=1, max_size=8, open=True)
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(SCHEMA)  # takes the schema lock: one process at a time migrates
            _migrate_permission_ids(_Cursor(conn.cursor(row_factory=dict_row)))

    def close(self) -> None:
        self._pool.close()

    def ping(self) -> bool:
        with self._pool.connection() as conn:
            conn.execute("SELECT 1")
        return True

    @contextmanager
    def _tx(self) -> Iterator[_Cursor]:
        """One transaction; driver errors of the caller's mistakes become the platform's errors."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                yield _Cursor(conn.cursor(row_factory=dict_row))
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(f"already exists: {exc.diag.message_detail or exc}") from exc
        except psycopg.errors.ForeignKeyViolation as exc:
            raise NotFound("a row this change refers to no longer exists") from exc

    # -- tenants -----------------------------------------------------------------------------------------------
    def tenants(self) -> list[str]:
        with self._tx() as cur:
            return [r["name"] for r in cur.execute("SELECT name FROM tenants ORDER BY name")]

    def tenant_exists(self, name: str) -> bool:
        with self._tx() as cur:
            return cur.execute("SELECT 1 FROM tenants WHERE name = %s", (name,)).fetchone() is not None

    def create_tenant(self, name: str) -> bool:
        """Create the tenant with its default profiles; True when it is new (its CREATE event is then queued in
        the outbox, in the same transaction). Idempotent: the default profiles are created when missing (also for
        tenants of the first version)."""
        with self._tx() as cur:
            created = cur.execute("INSERT INTO tenants (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,)).rowcount
            # The catalogue, with its fixed ids; an entry the tenant lacks is added (system permissions cannot be
            # deleted, but a database of an earlier version may lack some). Present ones are left alone.
            cur.execute(
                "INSERT INTO permissions (service, id, name, path, method, permission, type)"
                " SELECT %s, c.id, c.name, c.path, c.method, c.permission, 'system'"
                " FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[])"
                " AS c(id, name, path, method, permission) ON CONFLICT DO NOTHING",
                (
                    name,
                    [pid for pid, _ in CATALOGUE],
                    [spec.name for _, spec in CATALOGUE],
                    [spec.path for _, spec in CATALOGUE],
                    [spec.method for _, spec in CATALOGUE],
                    [spec.permission for _, spec in CATALOGUE],
                ),
            )
            for group, grants in DEFAULT_GRANTS.items():
                row = cur.execute(
                    "INSERT INTO groups (service, name, description) VALUES (%s, %s, %s)"
                    " ON CONFLICT (service, name) DO NOTHING RETURNING id",
                    (name, group, DEFAULT_GROUP_DESCRIPTIONS[group]),
                ).fetchone()
                if row is None:
                    continue  # exists: its grants may have been edited, leave them as they are
                cur.execute(
                    "INSERT INTO group_permissions (group_id, permission_id)"
                    " SELECT %s, pk FROM permissions WHERE service = %s AND id = ANY(%s) ON CONFLICT DO NOTHING",
                    (row["id"], name, list(grants)),
                )
            # Users of the first version had a profile but no group membership.
            cur.execute(
                "INSERT INTO user_groups (user_id, group_id) SELECT u.id, g.id FROM users u"
                " JOIN groups g ON g.service = u.service AND g.name = u.profile WHERE u.service = %s"
                " ON CONFLICT DO NOTHING",
                (name,),
            )
            if created == 1:
                _queue_tenancy_event(cur, "CREATE", name)  # last: the outbox lock is held only until the commit
            return created == 1

    def delete_tenant(self, name: str) -> list[int] | None:
        """Remove the tenant and everything of it, queueing its DELETE event in the outbox (same transaction); the
        ids of its users, or None when there was no such tenant."""
        with self._tx() as cur:
            ids = [r["id"] for r in cur.execute("SELECT id FROM users WHERE service = %s", (name,))]
            if cur.execute("DELETE FROM tenants WHERE name = %s", (name,)).rowcount == 0:
                return None
            _queue_tenancy_event(cur, "DELETE", name)
            return ids

    # -- users -------------------------------------------------------------------------------------------------
    def users(self, tenant: str) -> list[User]:
        with self._tx() as cur:
            rows = cur.execute("SELECT {u} FROM users WHERE service = %s ORDER BY id", (tenant,))
            return [User(**r) for r in rows]

    def user(self, tenant: str, ref: str | int) -> User | None:
        """A user of ``tenant`` by id (digits) or username."""
        with self._tx() as cur:
            if isinstance(ref, int) or ref.isdigit():
                if int(ref) >= 2**63:
                    return None
                q = "SELECT {u} FROM users WHERE service = %s AND id = %s"
                return _user(cur.execute(q, (tenant, int(ref))).fetchone())
            q = "SELECT {u} FROM users WHERE service = %s AND username = %s"
            return _user(cur.execute(q, (tenant, ref)).fetchone())

    def user_by_id(self, user_id: int) -> User | None:
        """Any tenant's user by id: only for checking tokens, whose claims name the tenant and the user."""
        with self._tx() as cur:
            return _user(cur.execute("SELECT {u} FROM users WHERE id = %s", (user_id,)).fetchone())

    def users_named(self, username: str) -> list[User]:
        """Every user called ``username``, in any tenant: only for logging in without naming the tenant."""
        with self._tx() as cur:
            rows = cur.execute("SELECT {u} FROM users WHERE username = %s ORDER BY id", (username,))
            return [User(**r) for r in rows]

    def create_user(
        self,
        tenant: str,
        username: str,
        profile: str,
        password_hash: str,
        name: str = "",
        email: str = "",
        created_by: str = "0",
    ) -> User:
        """Create a user and put it in the group named by its profile (which must exist in ``tenant``)."""
        with self._tx() as cur:
            group = cur.execute("SELECT id FROM groups WHERE service = %s AND name = %s", (tenant, profile)).fetchone()
            if group is None:
                raise Invalid(f"profile {profile!r} is not a group of this tenant", profile=profile)
            row = cur.execute(
                "INSERT INTO users (username, service, profile, password_hash, name, email, created_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (service, username) DO NOTHING"
                " RETURNING {u}",
                (username, tenant, profile, password_hash, name, email, created_by),
            ).fetchone()
            if row is None:
                raise Conflict(f"user {username!r} already exists in this tenant", username=username)
            cur.execute("INSERT INTO user_groups (user_id, group_id) VALUES (%s, %s)", (row["id"], group["id"]))
            return User(**row)

    def update_user(self, tenant: str, user_id: int, name: str, email: str, profile: str) -> User:
        """Change name, e-mail and profile; a new profile moves the user from the old profile's group to the new
        one's. Tokens that carry the old profile are made stale (token version bumped) when the profile changes."""
        with self._tx() as cur:
            current = cur.execute(
                "SELECT profile FROM users WHERE service = %s AND id = %s FOR UPDATE", (tenant, user_id)
            ).fetchone()
            if current is None:
                raise NotFound("no user found with this id or username")
            if profile != current["profile"]:
                new = cur.execute(
                    "SELECT id FROM groups WHERE service = %s AND name = %s", (tenant, profile)
                ).fetchone()
                if new is None:
                    raise Invalid(f"profile {profile!r} is not a group of this tenant", profile=profile)
                cur.execute(
                    "DELETE FROM user_groups WHERE user_id = %s AND group_id ="
                    " (SELECT id FROM groups WHERE service = %s AND name = %s)",
                    (user_id, tenant, current["profile"]),
                )
                cur.execute(
                    "INSERT INTO user_groups (user_id, group_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (user_id, new["id"]),
                )
            row = cur.execute(
                "UPDATE users SET name = %s, email = %s, profile = %s,"
                " token_version = token_version + CASE WHEN profile = %s THEN 0 ELSE 1 END"
                " WHERE service = %s AND id = %s RETURNING {u}",
                (name, email, profile, profile, tenant, user_id),
            ).fetchone()
            assert row is not None
            return User(**row)

    def delete_user(self, tenant: str, user_id: int) -> bool:
        with self._tx() as cur:
            return cur.execute("DELETE FROM users WHERE service = %s AND id = %s", (tenant, user_id)).rowcount == 1

    def password_history(self, user_id: int, count: int) -> list[str]:
        """The user's current hash and its ``count - 1`` predecessors, newest first."""
        with self._tx() as cur:
            current = cur.execute("SELECT password_hash FROM users WHERE id = %s", (user_id,)).fetchone()
            if current is None:
                return []
            rows = cur.execute(
                "SELECT password_hash FROM password_history WHERE user_id = %s ORDER BY created DESC LIMIT %s",
                (user_id, max(count - 1, 0)),
            )
            return [current["password_hash"], *(r["password_hash"] for r in rows)][: max(count, 1)]

    def set_password(self, user_id: int, password_hash: str, keep: int, revoke: bool = True) -> int | None:
        """Replace the password (the old hash joins the history, of which ``keep`` entries are kept); with
        ``revoke`` the token version is bumped so tokens issued before no longer pass. The new token version,
        or None when the user no longer exists."""
        with self._tx() as cur:
            old = cur.execute("SELECT password_hash FROM users WHERE id = %s FOR UPDATE", (user_id,)).fetchone()
            if old is None:
                return None
            if not old["password_hash"].startswith("!"):
                cur.execute(
                    "INSERT INTO password_history (user_id, password_hash) VALUES (%s, %s)",
                    (user_id, old["password_hash"]),
                )
            cur.execute(
                "DELETE FROM password_history WHERE user_id = %s AND ctid NOT IN (SELECT ctid FROM password_history"
                " WHERE user_id = %s ORDER BY created DESC LIMIT %s)",
                (user_id, user_id, max(keep, 0)),
            )
            row = cur.execute(
                "UPDATE users SET password_hash = %s, token_version = token_version + %s WHERE id = %s"
                " RETURNING token_version",
                (password_hash, 1 if revoke else 0, user_id),
            ).fetchone()
            assert row is not None
            return int(row["token_version"])

    def rehash(self, user_id: int, old_hash: str, new_hash: str) -> None:
        """Replace a hash of the same password by a stronger one (after a login), unless it changed meanwhile."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE users SET password_hash = %s WHERE id = %s AND password_hash = %s",
                (new_hash, user_id, old_hash),
            )

    def bump_token_version(self, user_id: int) -> int | None:
        with self._tx() as cur:
            row = cur.execute(
                "UPDATE users SET token_version = token_version + 1 WHERE id = %s RETURNING token_version", (user_id,)
            ).fetchone()
            return int(row["token_version"]) if row else None

    # -- password resets ---------------------------------------------------------------------------------------
    def create_reset(self, user_id: int, token_hash: str, ttl_seconds: int) -> None:
        with self._tx() as cur:
            cur.execute("DELETE FROM password_resets WHERE user_id = %s OR expires < now()", (user_id,))
            cur.execute(
                "INSERT INTO password_resets (token_hash, user_id, expires)"
                " VALUES (%s, %s, now() + make_interval(secs => %s))",
                (token_hash, user_id, ttl_seconds),
            )

    def peek_reset(self, token_hash: str) -> int | None:
        """The user a valid reset link belongs to, leaving the link in place."""
        with self._tx() as cur:
            row = cur.execute(
                "SELECT user_id FROM password_resets WHERE token_hash = %s AND expires > now()", (token_hash,)
            ).fetchone()
            return int(row["user_id"]) if row else None

    def take_reset(self, token_hash: str) -> int | None:
        """The user a reset link belongs to, consuming the link; None when it is unknown or expired."""
        with self._tx() as cur:
            row = cur.execute(
                "DELETE FROM password_resets WHERE token_hash = %s RETURNING user_id, expires > now() AS valid",
                (token_hash,),
            ).fetchone()
            return int(row["user_id"]) if row and row["valid"] else None

    # -- revocations -------------------------------------------------------------------------------------------
    def add_revocation(self, jti: str, tenant: str, expires_at: int) -> None:
        with self._tx() as cur:
            cur.execute("DELETE FROM revoked_tokens WHERE expires < now()")
            cur.execute(
                "INSERT INTO revoked_tokens (jti, service, expires) VALUES (%s, %s, to_timestamp(%s))"
                " ON CONFLICT (jti) DO NOTHING",
                (jti, tenant, expires_at),
            )

    def is_revoked(self, jti: str) -> bool:
        with self._tx() as cur:
            q = "SELECT 1 FROM revoked_tokens WHERE jti = %s AND expires > now()"
            return cur.execute(q, (jti,)).fetchone() is not None

    def active_revocations(self) -> list[tuple[str, int]]:
        """``(jti, expires_at)`` of every revocation still in force."""
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT jti, extract(epoch FROM expires)::bigint AS exp FROM revoked_tokens WHERE expires > now()"
            )
            return [(r["jti"], int(r["exp"])) for r in rows]

    # -- groups ------------------------------------------------------------------------------------------------
    def groups(self, tenant: str, name_part: str | None = None) -> list[Group]:
        with self._tx() as cur:
            if name_part:
                like = "%" + name_part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                rows = cur.execute(
                    "SELECT id, service, name, description FROM groups WHERE service = %s AND name LIKE %s ORDER BY id",
                    (tenant, like),
                )
            else:
                rows = cur.execute(
                    "SELECT id, service, name, description FROM groups WHERE service = %s ORDER BY id", (tenant,)
                )
            return [Group(**r) for r in rows]

    def group(self, tenant: str, ref: str | int) -> Group | None:
        """A group of ``tenant`` by id (digits) or name."""
        with self._tx() as cur:
            if isinstance(ref, int) or ref.isdigit():
                if int(ref) >= 2**63:
                    return None
                q = "SELECT id, service, name, description FROM groups WHERE service = %s AND id = %s"
                row = cur.execute(q, (tenant, int(ref))).fetchone()
            else:
                q = "SELECT id, service, name, description FROM groups WHERE service = %s AND name = %s"
                row = cur.execute(q, (tenant, ref)).fetchone()
            return Group(**row) if row else None

    def create_group(self, tenant: str, name: str, description: str) -> Group:
        with self._tx() as cur:
            row = cur.execute(
                "INSERT INTO groups (service, name, description) VALUES (%s, %s, %s)"
                " ON CONFLICT (service, name) DO NOTHING RETURNING id, service, name, description",
                (tenant, name, description),
            ).fetchone()
            if row is None:
                raise Conflict(f"group {name!r} already exists", name=name)
            return Group(**row)

    def update_group(self, tenant: str, group_id: int, name: str, description: str) -> Group:
        """Rename and/or describe a group; users whose profile it is follow the new name."""
        with self._tx() as cur:
            old = cur.execute(
                "SELECT name FROM groups WHERE service = %s AND id = %s FOR UPDATE", (tenant, group_id)
            ).fetchone()
            if old is None:
                raise NotFound("no group found with this id or name")
            if name != old["name"]:
                if cur.execute("SELECT 1 FROM groups WHERE service = %s AND name = %s", (tenant, name)).fetchone():
                    raise Conflict(f"group {name!r} already exists", name=name)
                cur.execute(
                    "UPDATE users SET profile = %s, token_version = token_version + 1"
                    " WHERE service = %s AND profile = %s",
                    (name, tenant, old["name"]),
                )
            row = cur.execute(
                "UPDATE groups SET name = %s, description = %s WHERE service = %s AND id = %s"
                " RETURNING id, service, name, description",
                (name, description, tenant, group_id),
            ).fetchone()
            assert row is not None
            return Group(**row)

    def delete_group(self, tenant: str, group_id: int) -> None:
        with self._tx() as cur:
            row = cur.execute(
                "SELECT name FROM groups WHERE service = %s AND id = %s FOR UPDATE", (tenant, group_id)
            ).fetchone()
            if row is None:
                raise NotFound("no group found with this id or name")
            n = cur.execute(
                "SELECT count(*) AS n FROM users WHERE service = %s AND profile = %s", (tenant, row["name"])
            ).fetchone()
            if n and n["n"]:
                raise Conflict(
                    f"group {row['name']!r} is the profile of {n['n']} user(s); give them another profile first"
                )
            cur.execute("DELETE FROM groups WHERE service = %s AND id = %s", (tenant, group_id))

    def group_users(self, group_id: int) -> list[User]:
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT {ua} FROM users u JOIN user_groups ug ON ug.user_id = u.id"
                " WHERE ug.group_id = %s ORDER BY u.id",
                (group_id,),
            )
            return [User(**r) for r in rows]

    def user_groups(self, user_id: int) -> list[Group]:
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT g.id, g.service, g.name, g.description FROM groups g"
                " JOIN user_groups ug ON ug.group_id = g.id WHERE ug.user_id = %s ORDER BY g.id",
                (user_id,),
            )
            return [Group(**r) for r in rows]

    # -- permissions -------------------------------------------------------------------------------------------
    def permissions(self, tenant: str, filters: dict[str, str]) -> list[Permission]:
        clauses: list[sql.Composable] = [sql.SQL("service = %s")]
        args = [tenant]
        for key in ("path", "method", "permission", "type", "name"):
            if key in filters:
                clauses.append(sql.SQL("{} = %s").format(sql.Identifier(key)))
                args.append(filters[key])
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT {p} FROM permissions WHERE {where} ORDER BY id", args, where=sql.SQL(" AND ").join(clauses)
            )
            return [_perm(r) for r in rows]

    def permission(self, tenant: str, ref: str | int) -> Permission | None:
        with self._tx() as cur:
            if isinstance(ref, int) or ref.isdigit():
                if int(ref) >= 2**63:
                    return None
                q = "SELECT {p} FROM permissions WHERE service = %s AND id = %s"
                row = cur.execute(q, (tenant, int(ref))).fetchone()
            else:
                q = "SELECT {p} FROM permissions WHERE service = %s AND name = %s"
                row = cur.execute(q, (tenant, ref)).fetchone()
            return _perm(row) if row else None

    def create_permission(self, tenant: str, spec: PermissionSpec) -> Permission:
        """Create a permission of ``tenant``; its id is the tenant's next own permission id."""
        with self._tx() as cur:
            pid = _allocate_permission_id(cur, tenant)
            row = cur.execute(
                "INSERT INTO permissions (service, id, name, path, method, permission) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (service, name) DO NOTHING RETURNING {p}",
                (tenant, pid, spec.name, spec.path, spec.method, spec.permission),
            ).fetchone()
            if row is None:
                raise Conflict(f"permission {spec.name!r} already exists", name=spec.name)
            return _perm(row)

    def update_permission(self, tenant: str, perm_id: int, spec: PermissionSpec) -> Permission:
        with self._tx() as cur:
            clash = cur.execute(
                "SELECT 1 FROM permissions WHERE service = %s AND name = %s AND id <> %s", (tenant, spec.name, perm_id)
            ).fetchone()
            if clash:
                raise Conflict(f"permission {spec.name!r} already exists", name=spec.name)
            row = cur.execute(
                "UPDATE permissions SET name = %s, path = %s, method = %s, permission = %s"
                " WHERE service = %s AND id = %s RETURNING {p}",
                (spec.name, spec.path, spec.method, spec.permission, tenant, perm_id),
            ).fetchone()
            if row is None:
                raise NotFound("no permission found with this id")
            return _perm(row)

    def delete_permission(self, tenant: str, perm_id: int) -> bool:
        with self._tx() as cur:
            q = "DELETE FROM permissions WHERE service = %s AND id = %s"
            return cur.execute(q, (tenant, perm_id)).rowcount == 1

    def group_permissions(self, group_id: int) -> list[Permission]:
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT {pa} FROM permissions p"
                " JOIN group_permissions gp ON gp.permission_id = p.pk WHERE gp.group_id = %s ORDER BY p.id",
                (group_id,),
            )
            return [_perm(r) for r in rows]

    def user_direct_permissions(self, user_id: int) -> list[Permission]:
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT {pa} FROM permissions p"
                " JOIN user_permissions up ON up.permission_id = p.pk WHERE up.user_id = %s ORDER BY p.id",
                (user_id,),
            )
            return [_perm(r) for r in rows]

    def user_all_permissions(self, user_id: int) -> list[Permission]:
        """The user's direct permissions and those of every group it is in (each once)."""
        with self._tx() as cur:
            rows = cur.execute(
                "SELECT {pa} FROM permissions p"
                " WHERE p.pk IN (SELECT permission_id FROM user_permissions WHERE user_id = %s"
                " UNION SELECT gp.permission_id FROM group_permissions gp"
                " JOIN user_groups ug ON ug.group_id = gp.group_id WHERE ug.user_id = %s) ORDER BY p.id",
                (user_id, user_id),
            )
            return [_perm(r) for r in rows]

    # -- relations (the caller has checked that both ends belong to one tenant) --------------------------------
    def relate(self, table: str, left: int, right: int, add: bool) -> bool:
        """Add or remove a relation; True when something changed."""
        cols = {
            "user_groups": ("user_id", "group_id"),
            "group_permissions": ("group_id", "permission_id"),
            "user_permissions": ("user_id", "permission_id"),
        }[table]
        with self._tx() as cur:
            parts = {"t": sql.Identifier(table), "a": sql.Identifier(cols[0]), "b": sql.Identifier(cols[1])}
            if add:
                q: LiteralString = "INSERT INTO {t} ({a}, {b}) VALUES (%s, %s) ON CONFLICT DO NOTHING"
            else:
                q = "DELETE FROM {t} WHERE {a} = %s AND {b} = %s"
            return cur.execute(q, (left, right), **parts).rowcount == 1
