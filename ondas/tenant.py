"""The tenant value type. A tenant name is part of Kafka topics, MQTT usernames and database names,
so it is validated once, here."""

from __future__ import annotations

import re

from ondas.errors import Invalid

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_]{0,62}$")
# "dojot-management" is the management tenant's topic prefix (seed contract); it is not a data tenant.
MANAGEMENT_TENANT = "dojot-management"


def validate_tenant(name: str) -> str:
    """Return ``name`` if it is a valid tenant name, else raise :class:`Invalid`."""
    if not isinstance(name, str) or not TENANT_RE.match(name):
        raise Invalid(
            "tenant names are 1-63 characters of lowercase letters, digits and '_', starting with a letter or digit",
            tenant=name,
        )
    return name
