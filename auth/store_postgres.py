"""Users and tenants in PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ondas.errors import Conflict

SCHEMA = """
CREATE TABLE IF NOT EXISTS tenants (
    name TEXT PRIMARY KEY,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS users (
    id BIGSERIAL PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL DEFAULT '',
    email TEXT NOT NULL DEFAULT '',
    service TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    profile TEXT NOT NULL DEFAULT 'user',
    password_hash TEXT NOT NULL,
    created TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""


@dataclass(frozen=True)
class User:
    id: int
    username: str
    service: str
    profile: str
    name: str
    email: str
    password_hash: str


class PostgresAuthStore:
    def __init__(self, url: str) -> None:
        self._pool = ConnectionPool(url, min_size=1, max_size=8, open=True)
        with self._pool.connection() as conn:
            conn.execute(SCHEMA)

    def close(self) -> None:
        self._pool.close()

    def ping(self) -> bool:
        with self._pool.connection() as conn:
            conn.execute("SELECT 1")
        return True

    def tenants(self) -> list[str]:
        with self._pool.connection() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM tenants ORDER BY name")]

    def create_tenant(self, name: str) -> bool:
        """True when the tenant is new."""
        with self._pool.connection() as conn:
            cur = conn.execute("INSERT INTO tenants (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
            return cur.rowcount == 1

    def user(self, username: str) -> User | None:
        with self._pool.connection() as conn:
            row = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    "SELECT id, username, service, profile, name, email, password_hash FROM users WHERE username = %s",
                    (username,),
                )
                .fetchone()
            )
        return User(**row) if row else None

    def create_user(self, username: str, service: str, profile: str, password_hash: str, name: str = "") -> User:
        try:
            with self._pool.connection() as conn:
                row = (
                    conn.cursor(row_factory=dict_row)
                    .execute(
                        "INSERT INTO users (username, service, profile, password_hash, name)"
                        " VALUES (%s, %s, %s, %s, %s)"
                        " RETURNING id, username, service, profile, name, email, password_hash",
                        (username, service, profile, password_hash, name),
                    )
                    .fetchone()
                )
        except psycopg.errors.UniqueViolation as exc:
            raise Conflict(f"user {username!r} already exists") from exc
        assert row is not None
        return User(**row)
