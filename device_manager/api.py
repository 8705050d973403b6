"""HTTP transport of the device manager: parse, call the service, render dojot's shapes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from device_manager.models import DeviceSpec, PageRequest, TemplateSpec, parse_actuation, template_id
from device_manager.service import DeviceManager
from ondas.errors import NotFound
from ondas.tenant import validate_tenant
from ondas.web import int_arg, json_body, principal


def _page() -> PageRequest:
    page, size = int_arg("page_num"), int_arg("page_size")
    return PageRequest(page=1 if page is None else page, page_size=20 if size is None else size)


def blueprint(service: DeviceManager) -> Blueprint:
    bp = Blueprint("device_manager", __name__)

    # -- templates -----------------------------------------------------------------------------------------
    @bp.post("/template")
    def create_template() -> dict[str, Any]:
        tenant = principal().tenant
        template = service.create_template(tenant, TemplateSpec.parse(json_body()))
        return {"result": "ok", "template": template.to_dict()}

    @bp.get("/template")
    def list_templates() -> dict[str, Any]:
        tenant = principal().tenant
        page = service.list_templates(tenant, _page())
        return {"templates": [t.to_dict() for t in page.items], "pagination": page.pagination()}

    @bp.get("/template/<raw_id>")
    def get_template(raw_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        tid = template_id(raw_id)
        if tid is None:
            raise NotFound(f"No such template: {raw_id}")
        return service.get_template(tenant, tid).to_dict()

    # -- devices -------------------------------------------------------------------------------------------
    @bp.post("/device")
    def create_devices() -> dict[str, Any]:
        tenant = principal().tenant
        count = int_arg("count")
        spec = DeviceSpec.parse(json_body())
        devices = service.create_devices(tenant, spec, 1 if count is None else count)
        return {"message": "devices created", "devices": [{"id": d.id, "label": d.label} for d in devices]}

    @bp.get("/device")
    def list_devices() -> dict[str, Any]:
        tenant = principal().tenant
        page = service.list_devices(tenant, _page())
        return {"pagination": page.pagination(), "devices": [d.to_dict() for d in page.items]}

    @bp.get("/device/<device_id>")
    def get_device(device_id: str) -> dict[str, Any]:
        return service.get_device(principal().tenant, device_id).to_dict()

    @bp.delete("/device/<device_id>")
    def delete_device(device_id: str) -> dict[str, Any]:
        removed = service.delete_device(principal().tenant, device_id)
        return {"result": "ok", "removed_device": removed.to_dict()}

    @bp.put("/device/<device_id>/actuate")
    def actuate(device_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        service.actuate(tenant, device_id, parse_actuation(json_body()))
        return {"status": "configuration sent to device"}

    # -- internal (not routed by the gateway; no caller token) ---------------------------------------------
    @bp.get("/internal/tenants/<tenant>/devices")
    def internal_devices(tenant: str) -> dict[str, Any]:
        return {"devices": [d.to_dict() for d in service.all_devices(validate_tenant(tenant))]}

    @bp.get("/internal/tenants/<tenant>/devices/<device_id>")
    def internal_device(tenant: str, device_id: str) -> dict[str, Any]:
        """One device (404 when it does not exist): agents look up a device their cache has not seen yet."""
        return service.get_device(validate_tenant(tenant), device_id).to_dict()

    return bp
