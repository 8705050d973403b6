"""Domain types of auth and the validation of their fields. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ondas.errors import Invalid

USERNAME_RE = re.compile(r"^[a-z0-9_][a-z0-9_.-]{0,49}$")
GROUP_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,49}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")
MAX_TEXT = 200
MAX_PATTERN = 500
DECISIONS = ("permit", "deny")
PERMISSION_TYPES = ("api", "system")

# The two profiles every tenant starts with.
ADMIN_GROUP = "admin"
USER_GROUP = "user"


@dataclass(frozen=True)
class User:
    id: int
    username: str
    service: str
    profile: str
    name: str
    email: str
    password_hash: str
    token_version: int
    created_by: str
    created_date: str

    def public(self) -> dict[str, Any]:
        """dojot's user shape (ids as strings, as dojot sends them)."""
        return {
            "id": str(self.id),
            "username": self.username,
            "service": self.service,
            "name": self.name,
            "email": self.email,
            "profile": self.profile,
            "created_date": self.created_date,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class Group:
    id: int
    service: str
    name: str
    description: str

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description}


@dataclass(frozen=True)
class Permission:
    """A permission of a tenant. ``id`` is its number within the tenant (what the API shows and takes; the
    catalogue's ids are the same in every tenant); ``pk`` is the row's platform-wide key, which relations use."""

    id: int
    service: str
    name: str
    path: str
    method: str
    permission: str
    type: str
    pk: int = 0

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "path": self.path,
            "method": self.method,
            "permission": self.permission,
            "type": self.type,
        }


@dataclass(frozen=True)
class PermissionSpec:
    """A permission before it is stored: what the PAP validates."""

    name: str
    path: str
    method: str
    permission: str


# Every tenant's permission catalogue. Ids are fixed and the same in every tenant (permissions belong to a tenant,
# their ids are numbered per tenant), so clients and scripts written for dojot grant
# ``POST /auth/pap/grouppermissions/<group>/<id>`` with dojot's ids. Patterns are Python regular expressions that
# must match the whole method and the whole path (see ``auth.pdp``). All of them are ``system`` permissions: they
# cannot be changed or deleted, only granted and taken away.
#
# Ids 1-22: dojot auth's own catalogue (its initial database population), same ids, names, paths and methods.
DOJOT_PERMISSIONS: tuple[tuple[int, PermissionSpec], ...] = (
    (1, PermissionSpec("all_all", "/(.*)", "(.*)", "permit")),
    (2, PermissionSpec("all_template", "/template/(.*)", "(.*)", "permit")),
    (3, PermissionSpec("ro_template", "/template/(.*)", "GET", "permit")),
    (4, PermissionSpec("all_device", "/device/(.*)", "(.*)", "permit")),
    (5, PermissionSpec("ro_device", "/device/(.*)", "GET", "permit")),
    (6, PermissionSpec("all_flows", "/flows/(.*)", "(.*)", "permit")),
    (7, PermissionSpec("ro_flows", "/flows/(.*)", "GET", "permit")),
    (8, PermissionSpec("ro_history", "/history/(.*)", "GET", "permit")),
    (9, PermissionSpec("all_user", "/auth/user/(.*)", "(.*)", "permit")),
    (10, PermissionSpec("ro_user", "/auth/user/(.*)", "GET", "permit")),
    (11, PermissionSpec("all_pap", "/auth/pap/(.*)", "(.*)", "permit")),
    (12, PermissionSpec("ro_pap", "/auth/pap/(.*)", "GET", "permit")),
    (13, PermissionSpec("all_x509_ca", "/x509/v1/ca/(.*)", "(.*)", "permit")),
    (14, PermissionSpec("ro_x509_ca", "/x509/v1/ca/(.*)", "GET", "permit")),
    (15, PermissionSpec("all_x509_certificates", "/x509/v1/certificates/(.*)", "(.*)", "permit")),
    (16, PermissionSpec("ro_x509_certificates", "/x509/v1/certificates/(.*)", "GET", "permit")),
    (17, PermissionSpec("ro_socketio", "/stream/socketio/", "GET", "permit")),
    (18, PermissionSpec("wo_import", "/import/(.*)", "POST", "permit")),
    (19, PermissionSpec("ro_export", "/export/(.*)", "GET", "permit")),
    (20, PermissionSpec("ro_image", "/fw-image/(.*)", "GET", "permit")),
    (21, PermissionSpec("all_image", "/fw-image/(.*)", "(.*)", "permit")),
    (22, PermissionSpec("ro_mqtt_metrics", "/iotagent-mqtt/metrics", "GET", "permit")),
)
# Ids from 1000: Ondas's own, for what dojot's catalogue has no permission for: the read-only profile of group
# ``user`` (every GET and HEAD, Ondas's routes included: agents' statistics, basic-auth credentials, history...),
# actuation, and keeping plain users out of user and access-control management.
ONDAS_FIRST_PERMISSION_ID = 1000
ONDAS_PERMISSIONS: tuple[tuple[int, PermissionSpec], ...] = (
    (1000, PermissionSpec("read_all", "/(.*)", "GET|HEAD", "permit")),
    (1001, PermissionSpec("actuate_devices", "/device/[^/]+/actuate", "PUT", "permit")),
    (1002, PermissionSpec("no_access_control", "/auth/(user|pap|password/reset)(/.*)?", "(.*)", "deny")),
)
CATALOGUE: tuple[tuple[int, PermissionSpec], ...] = DOJOT_PERMISSIONS + ONDAS_PERMISSIONS
# Ids 1000-1999 stay reserved for Ondas's catalogue; a tenant's own permissions are numbered from 23 (as dojot's
# next permission would be), skipping that block.
RESERVED_PERMISSION_IDS = range(ONDAS_FIRST_PERMISSION_ID, 2000)
FIRST_CUSTOM_PERMISSION_ID = DOJOT_PERMISSIONS[-1][0] + 1

# The two groups (profiles) every tenant starts with and the catalogue ids granted to each when the group is
# created; both groups stay editable through the PAP. ``admin`` has dojot's grant (``all_all``); ``user`` keeps
# Ondas's read-only profile (dojot's ``user`` may also write devices, templates, flows, certificates and images).
DEFAULT_GRANTS: dict[str, tuple[int, ...]] = {
    ADMIN_GROUP: (1,),
    USER_GROUP: (1000, 1001, 1002),
}
DEFAULT_GROUP_DESCRIPTIONS = {
    ADMIN_GROUP: "Administrators: every operation within the tenant",
    USER_GROUP: "Users: read everything, actuate devices; no user or access-control management",
}


def text_field(body: dict[str, Any], key: str, *, required: bool = False, default: str = "") -> str:
    value = body.get(key)
    if value is None:
        if required:
            raise Invalid(f'"{key}" is required')
        return default
    if not isinstance(value, str):
        raise Invalid(f'"{key}" must be a string')
    if len(value) > MAX_TEXT:
        raise Invalid(f'"{key}" has at most {MAX_TEXT} characters')
    if required and not value.strip():
        raise Invalid(f'"{key}" must not be empty')
    return value


def validate_username(username: object) -> str:
    if not isinstance(username, str) or not USERNAME_RE.match(username) or username.isdigit():
        raise Invalid(
            "usernames are 1-50 characters of lowercase letters, digits, '_', '.' and '-', start with a letter, "
            "digit or '_', and are not all digits",
            username=username if isinstance(username, str) else None,
        )
    return username


def validate_email(email: str) -> str:
    if email and not EMAIL_RE.match(email):
        raise Invalid('"email" is not an e-mail address', email=email)
    return email


def validate_group_name(name: object) -> str:
    if not isinstance(name, str) or not GROUP_NAME_RE.match(name) or name.isdigit():
        raise Invalid(
            "group names are 1-50 characters of letters, digits, '_', '.' and '-', and are not all digits",
            name=name if isinstance(name, str) else None,
        )
    return name


def validate_pattern(field: str, pattern: object) -> str:
    if not isinstance(pattern, str) or not pattern:
        raise Invalid(f'"{field}" must be a non-empty regular expression')
    if len(pattern) > MAX_PATTERN:
        raise Invalid(f'"{field}" has at most {MAX_PATTERN} characters')
    try:
        re.compile(pattern)
    except re.error as exc:
        raise Invalid(f'"{field}" is not a valid regular expression: {exc}', **{field: pattern}) from exc
    return pattern


def permission_spec(body: dict[str, Any]) -> PermissionSpec:
    """Validate a PAP permission body ``{"name","path","method","permission"}``."""
    unknown = set(body) - {"name", "path", "method", "permission", "type", "id"}
    if unknown:
        raise Invalid(f"unknown fields {sorted(unknown)}; a permission has name, path, method and permission")
    name = validate_group_name(body.get("name"))
    path = validate_pattern("path", body.get("path"))
    method = validate_pattern("method", body.get("method"))
    decision = body.get("permission")
    if decision not in DECISIONS:
        raise Invalid('"permission" must be "permit" or "deny"')
    if body.get("type", "api") != "api":
        raise Invalid('only "api" permissions can be created or changed')
    return PermissionSpec(name=name, path=path, method=method, permission=str(decision))
