"""Service identity: how one platform service proves to another (auth's internal routes) who it is.

Services never hold user passwords. The platform keeps one master secret that only auth receives; every other
service receives its own key, derived from the master secret and the service's name with HMAC-SHA256. A caller
sends ``Authorization: Service <name>:<key>``; auth derives the key for ``<name>`` again and compares. A leaked key
names the one service it belongs to and cannot be turned into the key of another service.
"""

from __future__ import annotations

import hashlib
import hmac
import re

SCHEME = "Service"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


def derive_service_key(master_secret: str, service: str) -> str:
    """The key of ``service`` under ``master_secret`` (hex)."""
    if not master_secret:
        raise ValueError("the master secret of service identities is empty")
    if not _NAME_RE.match(service):
        raise ValueError(f"invalid service name {service!r}")
    return hmac.new(master_secret.encode(), f"ondas-service:{service}".encode(), hashlib.sha256).hexdigest()


def service_authorization(service: str, key: str) -> str:
    """The value of the ``Authorization`` header a service sends on internal calls."""
    return f"{SCHEME} {service}:{key}"


def parse_service_authorization(header: str | None) -> tuple[str, str] | None:
    """``(name, key)`` from an ``Authorization: Service <name>:<key>`` header; None when it is not one."""
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != SCHEME.lower():
        return None
    name, sep, key = rest.strip().partition(":")
    if not sep or not _NAME_RE.match(name) or not key:
        return None
    return name, key


def verify_service_key(master_secret: str, service: str, key: str) -> bool:
    """True when ``key`` is the key of ``service`` under ``master_secret``."""
    if not master_secret:
        return False
    try:
        expected = derive_service_key(master_secret, service)
    except ValueError:
        return False
    return hmac.compare_digest(expected, key)
