"""What the MQTT agent removes when a tenant is deleted (run by :class:`ondas.tenancy.TenantPurge`, once per
DELETE event for the whole agent group): the device passwords it issued (Redis, and the broker's dynamic
security clients), the certificates of the tenant's devices (revoked, the broker reloads its CRL), and the live
sessions of those devices.

When auth already has a tenant of that name again (``recreated``), only what belonged to the old tenant goes:
certificates issued before the deletion, and passwords of devices the device manager does not know now.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from agents.core.credentials_redis import RedisCredentialStore as CredentialStore
from agents.mqtt.revocation import CertificateRevoker

log = logging.getLogger("agents.mqtt.tenants")


class TenantRemoval:
    def __init__(
        self,
        *,
        credentials: CredentialStore | None,
        revoker: CertificateRevoker | None,
        end_sessions: Callable[[str], None] | None,
        device_exists: Callable[[str, str], bool],
    ) -> None:
        self._credentials = credentials
        self._revoker = revoker
        self._end_sessions = end_sessions
        self._device_exists = device_exists

    def __call__(self, tenant: str, deleted_at: float, recreated: bool) -> None:
        identities: set[str] = set()
        if self._revoker is not None:
            before = dt.datetime.fromtimestamp(deleted_at, dt.UTC) if recreated else None
            identities.update(self._revoker.revoke_tenant(tenant, before))
        passwords: list[str] = []
        if self._credentials is not None:
            for device_id in self._credentials.device_ids(tenant):
                if recreated and self._device_exists(tenant, device_id):
                    continue  # a device of the new tenant
                self._credentials.delete(tenant, device_id)
                passwords.append(device_id)
                identities.add(f"{tenant}:{device_id}")
        if self._end_sessions is not None:
            for identity in sorted(identities):
                self._end_sessions(identity)
        log.info(
            "deleted tenant's device credentials removed",
            extra={"tenant": tenant, "passwords": len(passwords), "identities": len(identities)},
        )
