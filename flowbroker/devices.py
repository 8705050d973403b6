"""The device manager's internal API as the flowbroker uses it (``GET /internal/tenants/<t>/devices/<id>`` with this
process's service identity): whether a device a flow names belongs to the flow's tenant (on save), and the templates
and static attributes of a device the worker has not seen an event of yet."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from flowbroker.nodes.base import NodeError
from ondas.errors import Unavailable
from ondas.service_identity import service_authorization
from ondas.settings import service_identity


class DeviceManagerClient:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self._url = url.rstrip("/")
        self._timeout = timeout
        self._session = requests.Session()

    def get(self, tenant: str, device_id: str) -> dict[str, Any] | None:
        """The device (the device manager's shape) or None when ``tenant`` has no such device."""
        identity = service_identity()
        headers = {"Authorization": service_authorization(*identity)} if identity else {}
        url = f"{self._url}/internal/tenants/{quote(tenant, safe='')}/devices/{quote(device_id, safe='')}"
        try:
            resp = self._session.get(url, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:
            raise Unavailable(f"the device manager cannot be asked about device {device_id}: {exc}") from exc
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise Unavailable(f"the device manager answered {resp.status_code} about device {device_id}")
        body = resp.json()
        if not isinstance(body, dict) or body.get("id") != device_id:
            raise Unavailable(f"the device manager answered with another device than {device_id}")
        return body

    def actuate(self, tenant: str, device_id: str, attrs: dict[str, Any]) -> None:
        """``PUT /internal/tenants/<t>/devices/<id>/actuate`` with ``{"attrs": ...}`` (the internal twin of
        ``PUT /device/<id>/actuate``); NodeError when the device manager refuses or cannot be reached."""
        identity = service_identity()
        headers = {"Authorization": service_authorization(*identity)} if identity else {}
        url = f"{self._url}/internal/tenants/{quote(tenant, safe='')}/devices/{quote(device_id, safe='')}/actuate"
        try:
            resp = self._session.put(url, json={"attrs": attrs}, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:
            raise NodeError(f"the device manager cannot be reached to actuate {device_id}: {exc}") from exc
        if resp.status_code != 200:
            raise NodeError(
                f"the device manager refused the actuation of {device_id}: {resp.status_code} {resp.text[:200]}"
            )
