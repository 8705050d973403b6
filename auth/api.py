"""HTTP routes of auth. Through the gateway, ``/auth`` maps to ``/`` here (dojot's login route)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from auth.service import AuthService
from ondas.authn import bearer_token
from ondas.errors import Invalid, OndasError
from ondas.web import json_body

bp = Blueprint("auth", __name__)


def _svc() -> AuthService:
    svc: AuthService = current_app.extensions["auth_service"]
    return svc


@bp.post("/")
def login() -> Response:
    body = json_body()
    username, passwd = body.get("username"), body.get("passwd")
    if not isinstance(username, str) or not isinstance(passwd, str) or not username or not passwd:
        raise Invalid('send {"username": "...", "passwd": "..."}')
    return jsonify({"jwt": _svc().login(username, passwd)})


_ALL = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@bp.route("/pdp/gateway", methods=_ALL)
def gateway_decision() -> tuple[Response, int]:
    """The gateway's delegation of a protected request: 200 permits, 401/403 refuse (reason in a header)."""
    try:
        who = _svc().check(bearer_token(request.headers.get("Authorization")))
    except OndasError as exc:
        resp = jsonify(exc.to_dict())
        resp.headers["X-Ondas-Reason"] = exc.message.replace('"', "'")
        return resp, exc.status
    resp = jsonify({"decision": "permit"})
    resp.headers["X-Ondas-Tenant"] = who.tenant
    resp.headers["X-Ondas-User"] = who.username
    return resp, 200


@bp.post("/pdp")
def pdp() -> Response:
    """dojot's PDP: ``{"action","jwt","resource"}`` -> ``{"decision": "permit"|"deny"}``."""
    body = json_body()
    token = body.get("jwt")
    if (
        not isinstance(token, str)
        or not isinstance(body.get("action"), str)
        or not isinstance(body.get("resource"), str)
    ):
        raise Invalid('send {"action": "<method>", "jwt": "<token>", "resource": "<path>"}')
    try:
        _svc().check(token)
    except OndasError:
        return jsonify({"decision": "deny"})
    return jsonify({"decision": "permit"})


# -- internal (not routed by the gateway) --------------------------------------------------------------------
@bp.get("/admin/tenants")
def list_tenants() -> Response:
    return jsonify({"tenants": _svc().tenants()})


@bp.post("/admin/tenants")
def create_tenant() -> tuple[Response, int]:
    """Create a tenant and, optionally, its first admin user: ``{"tenant", "admin"?: {"username","passwd"}}``."""
    body = json_body()
    tenant = body.get("tenant")
    if not isinstance(tenant, str):
        raise Invalid('send {"tenant": "<name>"}')
    created = _svc().create_tenant(tenant)
    out: dict[str, object] = {"tenant": tenant, "created": created}
    admin = body.get("admin")
    if admin is not None:
        if (
            not isinstance(admin, dict)
            or not isinstance(admin.get("username"), str)
            or not isinstance(admin.get("passwd"), str)
        ):
            raise Invalid('"admin" must be {"username": "...", "passwd": "..."}')
        out["admin"] = _svc().create_user(admin["username"], admin["passwd"], tenant, "admin")
    return jsonify(out), 201 if created else 200
