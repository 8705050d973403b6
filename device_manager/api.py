"""HTTP transport of the device manager: parse, call the service, render dojot's shapes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from device_manager import transfer
from device_manager.models import (
    DeviceSpec,
    Filter,
    PageRequest,
    TemplateNotFound,
    TemplateSpec,
    iso,
    lookup_id,
    parse_actuation,
    parse_attr_format,
    parse_bool,
    template_id,
)
from device_manager.service import DeviceManager
from ondas.errors import Invalid, NotFound
from ondas.tenant import validate_tenant
from ondas.web import int_arg, json_body, principal, service_caller


def _page() -> PageRequest:
    page, size = int_arg("page_num"), int_arg("page_size")
    return PageRequest(page=1 if page is None else page, page_size=20 if size is None else size)


def _filter(devices: bool) -> Filter:
    args = request.args
    return Filter.parse(
        label=args.get("label"),
        attrs=args.getlist("attr"),
        attr_type=args.get("attr_type"),
        template=args.get("template") if devices else None,
        sort_by=args.get("sortBy"),
        disabled=args.get("disabled") if devices else None,
    )


def _template_id(raw: str) -> int:
    tid = template_id(raw)
    if tid is None:
        raise TemplateNotFound(raw)
    return tid


def _device_id(raw: str) -> str:
    device_id = lookup_id(raw)
    if device_id is None:
        raise NotFound(f"No such device: {raw}")
    return device_id


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
        fmt = parse_attr_format(request.args.get("attr_format"))
        page = service.list_templates(tenant, _filter(devices=False), _page())
        return {"templates": [t.to_dict(fmt) for t in page.items], "pagination": page.pagination()}

    @bp.delete("/template")
    def delete_templates() -> dict[str, Any]:
        removed = service.delete_all_templates(principal().tenant)
        return {"result": "ok", "removed": [t.to_dict() for t in removed]}

    @bp.get("/template/<raw_id>")
    def get_template(raw_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        fmt = parse_attr_format(request.args.get("attr_format"))
        return service.get_template(tenant, _template_id(raw_id)).to_dict(fmt)

    @bp.put("/template/<raw_id>")
    def update_template(raw_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        tid = _template_id(raw_id)
        template, _ = service.update_template(tenant, tid, TemplateSpec.parse(json_body()))
        return {"result": "ok", "updated": template.to_dict()}

    @bp.delete("/template/<raw_id>")
    def delete_template(raw_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        removed = service.delete_template(tenant, _template_id(raw_id))
        return {"result": "ok", "removed": removed.to_dict()}

    # -- devices -------------------------------------------------------------------------------------------
    @bp.post("/device")
    def create_devices() -> dict[str, Any]:
        tenant = principal().tenant
        count = int_arg("count")
        verbose = parse_bool(request.args.get("verbose"), "verbose")
        if verbose and count not in (None, 1):
            raise Invalid("Verbose can only be used for single device creation")
        spec = DeviceSpec.parse(json_body())
        devices = service.create_devices(tenant, spec, 1 if count is None else count)
        if verbose:
            return {"message": "device created", "devices": [d.to_dict() for d in devices]}
        return {"message": "devices created", "devices": [{"id": d.id, "label": d.label} for d in devices]}

    @bp.get("/device")
    def list_devices() -> Any:
        tenant = principal().tenant
        f, page = _filter(devices=True), _page()
        if parse_bool(request.args.get("idsOnly"), "idsOnly"):
            return jsonify(service.list_device_ids(tenant, f, page))
        result = service.list_devices(tenant, f, page)
        return {"pagination": result.pagination(), "devices": [d.to_dict() for d in result.items]}

    @bp.delete("/device")
    def delete_devices() -> dict[str, Any]:
        removed = service.delete_all_devices(principal().tenant)
        return {"result": "ok", "removed_devices": [d.to_dict() for d in removed]}

    @bp.get("/device/template/<raw_id>")
    def devices_of_template(raw_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        result = service.devices_of_template(tenant, _template_id(raw_id), _page())
        return {"pagination": result.pagination(), "devices": [d.to_dict() for d in result.items]}

    @bp.get("/device/<device_id>")
    def get_device(device_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        return service.get_device(tenant, _device_id(device_id)).to_dict()

    @bp.put("/device/<device_id>")
    def update_device(device_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        did = _device_id(device_id)
        device = service.update_device(tenant, did, DeviceSpec.parse(json_body()))
        return {"message": "device updated", "device": device.to_dict()}

    @bp.delete("/device/<device_id>")
    def delete_device(device_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        removed = service.delete_device(tenant, _device_id(device_id))
        return {"result": "ok", "removed_device": removed.to_dict()}

    @bp.put("/device/<device_id>/template/<raw_id>")
    def add_template(device_id: str, raw_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        device = service.add_template(tenant, _device_id(device_id), _template_id(raw_id))
        return {"message": "device updated", "device": device.to_dict()}

    @bp.delete("/device/<device_id>/template/<raw_id>")
    def remove_template(device_id: str, raw_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        device = service.remove_template(tenant, _device_id(device_id), _template_id(raw_id))
        return {"message": "device updated", "device": device.to_dict()}

    @bp.put("/device/<device_id>/actuate")
    def actuate(device_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        did = _device_id(device_id)
        service.actuate(tenant, did, parse_actuation(json_body()))
        return {"status": "configuration sent to device"}

    # -- configuration import/export -----------------------------------------------------------------------
    @bp.get("/export")
    def export() -> dict[str, Any]:
        return transfer.render(service.export(principal().tenant))

    @bp.post("/import")
    def import_configuration() -> dict[str, Any]:
        tenant = principal().tenant
        dry_run = parse_bool(request.args.get("dry_run"), "dry_run")
        raw = request.get_data(cache=True)
        transfer.check_body(raw)
        try:
            document = json_body()
        except Invalid as exc:
            raise transfer.InvalidImport([transfer.body_problem(raw, exc.message)]) from exc
        config = transfer.parse_configuration(document, service.now())
        if dry_run:
            changes = service.import_changes(tenant, config)
            return {
                "result": "ok",
                "message": "dry run: the document is valid; nothing was changed",
                "dry_run": True,
                "templates": len(config.templates),
                "devices": len(config.devices),
                "changes": changes.to_dict(),
            }
        templates, devices = service.import_configuration(tenant, config)
        return {"result": "ok", "message": "configuration imported", "templates": templates, "devices": devices}

    @bp.get("/import/previous")
    def previous_import() -> Response:
        created, document = service.previous_import(principal().tenant)
        response = jsonify(document)
        response.headers["X-Ondas-Backup-Created"] = iso(created)
        return response

    @bp.post("/import/undo")
    def undo_import() -> dict[str, Any]:
        tenant = principal().tenant
        templates, devices = service.undo_import(tenant, lambda doc: transfer.parse_configuration(doc, service.now()))
        return {
            "result": "ok",
            "message": "previous configuration restored",
            "templates": templates,
            "devices": devices,
        }

    # -- internal (not routed by the gateway): platform services only, by service identity ---------------
    @bp.get("/internal/tenants/<tenant>/devices")
    def internal_devices(tenant: str) -> dict[str, Any]:
        """Every device of ``tenant``, for ``Authorization: Service <name>:<key>`` only (401 otherwise)."""
        service_caller()
        return {"devices": [d.to_dict() for d in service.all_devices(validate_tenant(tenant))]}

    @bp.get("/internal/tenants/<tenant>/devices/<device_id>")
    def internal_device(tenant: str, device_id: str) -> dict[str, Any]:
        """One device (404 when it does not exist): agents look up a device their cache has not seen yet. For
        ``Authorization: Service <name>:<key>`` only (401 otherwise)."""
        service_caller()
        return service.get_device(validate_tenant(tenant), _device_id(device_id)).to_dict()

    @bp.put("/internal/tenants/<tenant>/devices/<device_id>/actuate")
    def internal_actuate(tenant: str, device_id: str) -> dict[str, Any]:
        """``PUT /device/<id>/actuate`` for platform services (the flowbroker's actuate nodes), with the same rules
        and answers; for ``Authorization: Service <name>:<key>`` only (401 otherwise)."""
        service_caller()
        service.actuate(validate_tenant(tenant), _device_id(device_id), parse_actuation(json_body()))
        return {"status": "configuration sent to device"}

    return bp
