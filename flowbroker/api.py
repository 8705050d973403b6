"""HTTP transport of the flowbroker: dojot's flow API (``/flows/v1/flow``, ``/flows/v1/node``, ``/flows/nodes``),
parse, call the service, render dojot's shapes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from flowbroker.models import CATALOGUE, FlowSpec
from flowbroker.service import FlowService
from ondas.web import json_body, principal


def blueprint(service: FlowService) -> Blueprint:
    bp = Blueprint("flowbroker", __name__)

    @bp.get("/flows/v1/flow")
    def list_flows() -> dict[str, Any]:
        return {"flows": [f.to_dict() for f in service.list(principal().tenant)]}

    @bp.post("/flows/v1/flow")
    def create_flow() -> dict[str, Any]:
        tenant = principal().tenant
        flow = service.create(tenant, FlowSpec.parse(json_body()))
        return {"message": "ok", "flow": flow.to_dict()}

    @bp.delete("/flows/v1/flow")
    def delete_flows() -> dict[str, Any]:
        service.delete_all(principal().tenant)
        return {"message": "All flows removed"}

    @bp.get("/flows/v1/flow/<flow_id>")
    def get_flow(flow_id: str) -> dict[str, Any]:
        return {"message": "ok", "flow": service.get(principal().tenant, flow_id).to_dict()}

    @bp.put("/flows/v1/flow/<flow_id>")
    def replace_flow(flow_id: str) -> dict[str, Any]:
        tenant = principal().tenant
        flow = service.replace(tenant, flow_id, FlowSpec.parse(json_body()))
        return {"message": "ok", "flow": flow.to_dict()}

    @bp.delete("/flows/v1/flow/<flow_id>")
    def delete_flow(flow_id: str) -> dict[str, Any]:
        return {"message": "flow removed", "flow": service.delete(principal().tenant, flow_id).to_dict()}

    @bp.get("/flows/v1/node")
    def list_remote_nodes() -> dict[str, Any]:
        principal()
        return {"nodes": []}  # remote nodes (dojot's docker images) are not supported

    @bp.get("/flows/nodes")
    def list_node_types() -> Response:
        principal()
        return jsonify([t.to_dict() for t in CATALOGUE.values() if not t.structural])

    return bp
