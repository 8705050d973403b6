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


# The tables of the version before per-tenant permission ids: one platform-wide sequence numbered every tenant's
# permissions (4 defaults per tenant, then the tenants' own).
SECOND_VERSION_SCHEMA = """
CREATE TABLE groups (
    id BIGSERIAL PRIMARY KEY,
    service TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    UNIQUE (service, name)
);
CREATE TABLE permissions (
    id BIGSERIAL PRIMARY KEY,
    service TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    method TEXT NOT NULL,
    permission TEXT NOT NULL CHECK (permission IN ('permit', 'deny')),
    type TEXT NOT NULL DEFAULT 'api' CHECK (type IN ('api', 'system')),
    UNIQUE (service, name)
);
CREATE TABLE user_groups (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, group_id)
);
CREATE TABLE group_permissions (
    group_id BIGINT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
    permission_id BIGINT NOT NULL REFERENCES permissions(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, permission_id)
);
CREATE TABLE user_permissions (
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    permission_id BIGINT NOT NULL REFERENCES permissions(id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, permission_id)
);
"""
OLD_DEFAULTS = [
    ("admin", "all_access", "/(.*)", "(.*)", "permit"),
    ("user", "read_all", "/(.*)", "GET|HEAD", "permit"),
    ("user", "actuate_devices", "/device/[^/]+/actuate", "PUT", "permit"),
    ("user", "no_access_control", "/auth/(user|pap|password/reset)(/.*)?", "(.*)", "deny"),
]


def _second_version_database(url):
    """Tenants admin, oldco and otherco with the defaults of that version (global ids 1-12), oldco's own
    permissions 'flows' (id 13, granted to its group 'flowers') and 'no_history' (id 57, given to olduser), and an
    edited default in otherco (its read_all reads devices only)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FIRST_VERSION_SCHEMA)
        conn.execute(SECOND_VERSION_SCHEMA)
        conn.execute("INSERT INTO tenants (name) VALUES ('admin'), ('oldco'), ('otherco')")
        users = {}
        for username, tenant, profile in [
            ("admin", "admin", "admin"),
            ("olduser", "oldco", "user"),
            ("oldboss", "oldco", "admin"),
            ("otherboss", "otherco", "admin"),
        ]:
            users[username] = conn.execute(
                "INSERT INTO users (username, service, profile, password_hash) VALUES (%s, %s, %s, %s) RETURNING id",
                (username, tenant, profile, legacy_scrypt_hash(f"{username}-pass-1", b"0123456789abcdef")),
            ).fetchone()[0]
        groups = {}
        next_id = 1
        for tenant in ("admin", "oldco", "otherco"):
            for group in ("admin", "user"):
                groups[tenant, group] = conn.execute(
                    "INSERT INTO groups (service, name) VALUES (%s, %s) RETURNING id", (tenant, group)
                ).fetchone()[0]
            for group, name, path, method, decision in OLD_DEFAULTS:
                if tenant == "otherco" and name == "read_all":
                    path = "/device(/.*)?"
                conn.execute(
                    "INSERT INTO permissions (id, service, name, path, method, permission)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
                    (next_id, tenant, name, path, method, decision),
                )
                conn.execute(
                    "INSERT INTO group_permissions (group_id, permission_id) VALUES (%s, %s)",
                    (groups[tenant, group], next_id),
                )
                next_id += 1
        conn.execute(
            "INSERT INTO permissions (id, service, name, path, method, permission)"
            " VALUES (13, 'oldco', 'flows', '/flows(/.*)?', '(.*)', 'permit'),"
            " (57, 'oldco', 'no_history', '/history(/.*)?', '(.*)', 'deny')"
        )
        conn.execute("SELECT setval('permissions_id_seq', 57)")
        flowers = conn.execute(
            "INSERT INTO groups (service, name) VALUES ('oldco', 'flowers') RETURNING id"
        ).fetchone()[0]
        conn.execute("INSERT INTO group_permissions (group_id, permission_id) VALUES (%s, 13)", (flowers,))
        conn.execute("INSERT INTO user_permissions (user_id, permission_id) VALUES (%s, 57)", (users["olduser"],))
        for username, tenant, profile in [
            ("admin", "admin", "admin"),
            ("olduser", "oldco", "user"),
            ("oldboss", "oldco", "admin"),
            ("otherboss", "otherco", "admin"),
        ]:
            conn.execute(
                "INSERT INTO user_groups (user_id, group_id) VALUES (%s, %s)",
                (users[username], groups[tenant, profile]),
            )
        conn.execute("INSERT INTO user_groups (user_id, group_id) VALUES (%s, %s)", (users["olduser"], flowers))


def test_permission_ids_of_a_second_version_database_become_per_tenant(pg_database, make_settings, start_auth):
    url = pg_database("authv2")
    _second_version_database(url)
    auth = start_auth(make_settings(db_url=url))
    boss = auth.login("oldboss", "oldboss-pass-1", "oldco")
    olduser = auth.login("olduser", "olduser-pass-1", "oldco")

    def catalogue(token):
        return {p["id"]: p for p in auth.call("GET", "/pap/permission", token).get_json()["permissions"]}

    cat = catalogue(boss)
    # dojot's ids and names, Ondas's from 1000; the old defaults became them (with their grants).
    assert cat[1]["name"] == "all_all" and cat[2]["name"] == "all_template" and cat[22]["name"] == "ro_mqtt_metrics"
    assert {pid: cat[pid]["name"] for pid in (1000, 1001, 1002)} == {
        1000: "read_all",
        1001: "actuate_devices",
        1002: "no_access_control",
    }
    assert all(cat[pid]["type"] == "system" for pid in [*range(1, 23), 1000, 1001, 1002])
    admin_grants = auth.call("GET", "/pap/group/admin/permissions", boss).get_json()["permissions"]
    assert [p["id"] for p in admin_grants] == [1]
    user_grants = auth.call("GET", "/pap/group/user/permissions", boss).get_json()["permissions"]
    assert [p["id"] for p in user_grants] == [1000, 1001, 1002]
    # The tenant's own: 57 keeps its number, 13 (now dojot's ro_flows) moves after it; grants follow them.
    assert cat[57]["name"] == "no_history" and cat[57]["type"] == "api"
    assert cat[58]["name"] == "flows" and cat[7]["name"] == "ro_flows"
    assert [p["id"] for p in auth.call("GET", "/pap/group/flowers/permissions", boss).get_json()["permissions"]] == [58]
    direct = auth.call("GET", "/pap/user/olduser/directpermissions", boss).get_json()["permissions"]
    assert [p["id"] for p in direct] == [57]
    # Decisions are what they were.
    assert auth.decision(olduser, "GET", "/device") == "permit"
    assert auth.decision(olduser, "POST", "/device") == "deny"
    assert auth.decision(olduser, "PUT", "/device/abc/actuate") == "permit"
    assert auth.decision(olduser, "POST", "/flows/v1/flow") == "permit"
    assert auth.decision(olduser, "GET", "/history/device/x/history") == "deny"
    assert auth.decision(olduser, "GET", "/auth/user") == "deny"
    assert auth.decision(boss, "POST", "/device") == "permit"
    # A new permission of the tenant comes after its highest id; dojot's ids grant as in dojot.
    r = auth.call(
        "POST", "/pap/permission", boss, json={"name": "new", "path": "/n", "method": "GET", "permission": "permit"}
    )
    assert r.get_json()["id"] == 59
    assert auth.call("POST", "/pap/grouppermissions/flowers/4", boss).status_code == 200
    assert auth.decision(olduser, "POST", "/device") == "permit"

    # An edited default stays as it was (a permission of the tenant, same meaning, same grant).
    other = auth.login("otherboss", "otherboss-pass-1", "otherco")
    edited = auth.call("GET", "/pap/permission?name=read_all", other).get_json()["permissions"]
    assert [(p["id"], p["path"], p["type"]) for p in edited] == [(23, "/device(/.*)?", "api")]
    assert [p["name"] for p in auth.call("GET", "/pap/group/user/permissions", other).get_json()["permissions"]] == [
        "read_all",
        "actuate_devices",
        "no_access_control",
    ]
    assert catalogue(other)[2]["name"] == "all_template"
    assert catalogue(auth.login("admin", "admin-pass-1", "admin"))[1]["name"] == "all_all"

    # Starting again changes nothing.
    again = start_auth(make_settings(db_url=url))
    assert catalogue(again.login("oldboss", "oldboss-pass-1", "oldco")) == catalogue(boss)
