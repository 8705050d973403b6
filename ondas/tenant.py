"""The tenant value type. A tenant name is part of Kafka topics, MQTT usernames and database names,
so it is validated once, here."""

from __future__ import annotations

import hashlib
import re

from ondas.errors import Invalid

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")
# The prefix of the platform-wide topics (dojot's contract: ``dojot-management.dojot.tenancy``). It is not a tenant:
# no tenant has this name (it is not even a valid tenant name), and it has nothing to do with the administrators'
# tenant, ``ONDAS_MANAGEMENT_TENANT`` (``admin``; ondas.settings.CommonSettings.management_tenant).
MANAGEMENT_TOPIC_PREFIX = "dojot-management"


def validate_tenant(name: str) -> str:
    """Return ``name`` if it is a valid tenant name, else raise :class:`Invalid`."""
    if not isinstance(name, str) or not TENANT_RE.match(name):
        raise Invalid(
            "tenant names are 1-63 characters of lowercase letters, digits and '_', starting with a letter or digit",
            tenant=name,
        )
    return name


MAX_DATABASE_NAME = 63  # MongoDB's limit on database names


def tenant_database_name(prefix: str, tenant: str) -> str:
    """The database of ``tenant`` in a store with one database per tenant (``<prefix><tenant>``), shortened with
    a hash suffix when it would exceed the store's name limit. Writers and readers of one store share it."""
    name = prefix + tenant
    if len(name) <= MAX_DATABASE_NAME:
        return name
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:12]
    return name[: MAX_DATABASE_NAME - len(digest) - 1] + "_" + digest
