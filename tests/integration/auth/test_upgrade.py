"""A database written by the first version of auth (usernames unique platform-wide, scrypt hashes, no groups)
keeps working: its users log in, get the default profiles' permissions, and usernames become per tenant."""

import psycopg
import pytest

from auth.passwords import legacy_scrypt_hash

pytestmark = pytest.mark.integration

FIRST_VERSION_SCHEMA = """
CREATE TABLE tenants (name TEXT PRIMARY KEY, created TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE TABLE users (
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


def test_a_first_version_database_is_upgraded(pg_database, make_settings, start_auth):
    url = pg_database("authv1")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FIRST_VERSION_SCHEMA)
        conn.execute("INSERT INTO tenants (name) VALUES ('admin'), ('oldco')")
        for username, tenant, profile in [("admin", "admin", "admin"), ("olduser", "oldco", "user")]:
            conn.execute(
                "INSERT INTO users (username, service, profile, password_hash) VALUES (%s, %s, %s, %s)",
                (username, tenant, profile, legacy_scrypt_hash(f"{username}-pass-1", b"0123456789abcdef")),
            )
    auth = start_auth(make_settings(db_url=url))
    old = auth.login("olduser", "olduser-pass-1")
    assert auth.decision(old, "GET", "/device") == "permit"
    assert auth.decision(old, "POST", "/device") == "deny"
    admin = auth.login("admin", "admin-pass-1", "admin")
    assert auth.decision(admin, "POST", "/device") == "permit"
    # Usernames are now unique per tenant only.
    r = auth.call("POST", "/user", admin, json={"username": "olduser", "passwd": "another-pass-1"})
    assert r.status_code == 200, r.get_json()
