"""HTTP routes of auth, in dojot's paths and shapes. Through the gateway, ``/auth`` maps to ``/`` here: the login
is ``POST /auth``, users are ``/auth/user``, the PAP is ``/auth/pap``, revocation is ``/auth/revoke``.

Who may call what:

- public: login (``POST /``), ``POST /password/resetlink``, dojot's ``POST /pdp`` (the token is in the body);
- any valid token: ``POST /revoke``, ``POST /password/update`` (the caller's own token and password);
- valid token whose permissions permit the request's method on ``/auth`` + its path: users, PAP, reports and
  password reset links (the same decision the gateway asks for);
- a member of group ``admin`` of the management tenant: ``/tenants``;
- a platform service (``Authorization: Service <name>:<key>``): ``/admin/tenants``;
- the gateway: ``/pdp/gateway``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from auth import pdp
from auth.models import permission_spec
from auth.service import AuthService, Caller, LoginThrottled
from ondas.authn import bearer_token
from ondas.errors import Forbidden, Invalid, OndasError, Unauthenticated
from ondas.web import json_body


def _token() -> str:
    return bearer_token(request.headers.get("Authorization"))


def _permitted(service: AuthService) -> Caller:
    """The caller, whose permissions must permit this request as the gateway would route it (``/auth`` + path)."""
    return service.authorize(_token(), request.method, "/auth" + quote(request.path, safe="/"))


def _management_admin(service: AuthService) -> Caller:
    caller = service.authenticate(_token())
    service.require_management_admin(caller)
    return caller


def _optional_body() -> dict[str, Any]:
    if not request.get_data(cache=True):
        return {}
    body: dict[str, Any] = json_body()
    return body


def _ok(message: str = "ok", **extra: Any) -> Response:
    return jsonify({"status": 200, "message": message, **extra})


_ALL = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


def blueprint(service: AuthService) -> Blueprint:
    """The routes of auth, calling ``service``."""
    bp = Blueprint("auth", __name__)

    # -- sessions ----------------------------------------------------------------------------------------------------
    @bp.post("/")
    def login() -> Response:
        """dojot's login ``{"username","passwd"}``; ``"service"`` (the tenant) picks the user when the username
        exists in several tenants."""
        body = json_body()
        unknown = set(body) - {"username", "passwd", "service"}
        if unknown:
            raise Invalid(f"unknown fields {sorted(unknown)}; send username, passwd and optionally service")
        try:
            token = service.login(
                body.get("username"),
                body.get("passwd"),
                body.get("service"),
                peer=request.remote_addr,
                forwarded_for=request.headers.get("X-Forwarded-For"),
                real_ip=request.headers.get("X-Real-IP"),
            )
        except LoginThrottled as exc:
            resp = jsonify(exc.to_dict())
            resp.status_code = exc.status
            resp.headers["Retry-After"] = str(exc.retry_after)
            return resp
        return jsonify({"jwt": token})

    @bp.post("/revoke")
    @bp.post("/auth/revoke")
    def revoke() -> Response:
        """Revoke this token (no body), ``{"jwt"}`` or every token of ``{"username"}`` (others: admins only)."""
        caller = service.authenticate(_token())
        return jsonify(service.revoke(caller, _optional_body()))

    # -- passwords ---------------------------------------------------------------------------------------------------
    @bp.post("/password/update")
    def change_password() -> Response:
        caller = service.authenticate(_token())
        service.change_password(caller, json_body())
        return _ok("password updated; tokens issued before are revoked, log in again")

    @bp.post("/password/reset/<ref>")
    def request_reset(ref: str) -> Response:
        caller = _permitted(service)
        link = service.request_reset(caller.tenant, ref)
        return jsonify(
            {
                "status": 200,
                "message": "hand this one-time link to the user: POST /auth/password/resetlink?link=<link>",
                "link": link,
                "expires_in": service.reset_ttl_seconds,
            }
        )

    @bp.post("/password/resetlink")
    def reset_password() -> Response:
        service.reset_password(request.args.get("link"), json_body())
        return _ok("password set")

    # -- users -------------------------------------------------------------------------------------------------------
    @bp.get("/user")
    def list_users() -> Response:
        caller = _permitted(service)
        return jsonify({"users": [u.public() for u in service.users(caller.tenant)]})

    @bp.post("/user")
    def create_user() -> Response:
        """dojot's body; ``service`` names the tenant (the caller's own; another one only for an administrator of the
        management tenant)."""
        caller = _permitted(service)
        user, link = service.create_user_for(caller, json_body())
        out: dict[str, Any] = {
            "user": user.public(),
            "groups": [user.profile],
            "could not add": [],
            "message": "user created",
        }
        if link is not None:
            out["reset_link"] = link  # no password was given: the user sets one with this link
        return jsonify([out])

    @bp.get("/user/<ref>")
    def get_user(ref: str) -> Response:
        caller = _permitted(service)
        return jsonify({"user": service.user(caller.tenant, ref).public()})

    @bp.put("/user/<ref>")
    def update_user(ref: str) -> Response:
        caller = _permitted(service)
        user = service.update_user(caller.tenant, ref, json_body(), caller)
        return _ok(user=user.public())

    @bp.delete("/user/<ref>")
    def delete_user(ref: str) -> Response:
        caller = _permitted(service)
        service.delete_user(caller.tenant, ref, caller)
        return _ok("User removed")

    # -- PAP: groups -------------------------------------------------------------------------------------------------
    @bp.post("/pap/group")
    def create_group() -> Response:
        caller = _permitted(service)
        return jsonify({"status": 200, "id": service.create_group(caller.tenant, json_body()).id})

    @bp.get("/pap/group")
    def list_groups() -> Response:
        caller = _permitted(service)
        return jsonify({"groups": [g.public() for g in service.groups(caller.tenant, request.args.get("name"))]})

    @bp.get("/pap/group/<ref>")
    def get_group(ref: str) -> Response:
        caller = _permitted(service)
        return jsonify(service.group(caller.tenant, ref).public())

    @bp.put("/pap/group/<ref>")
    def update_group(ref: str) -> Response:
        caller = _permitted(service)
        service.update_group(caller.tenant, ref, json_body())
        return _ok()

    @bp.delete("/pap/group/<ref>")
    def delete_group(ref: str) -> Response:
        caller = _permitted(service)
        service.delete_group(caller.tenant, ref)
        return _ok()

    # -- PAP: permissions --------------------------------------------------------------------------------------------
    @bp.post("/pap/permission")
    def create_permission() -> Response:
        caller = _permitted(service)
        return jsonify({"status": 200, "id": service.create_permission(caller.tenant, permission_spec(json_body())).id})

    @bp.get("/pap/permission")
    def list_permissions() -> Response:
        caller = _permitted(service)
        filters = {k: v for k, v in request.args.items()}
        return jsonify({"permissions": [p.public() for p in service.permissions(caller.tenant, filters)]})

    @bp.get("/pap/permission/<ref>")
    def get_permission(ref: str) -> Response:
        caller = _permitted(service)
        return jsonify(service.permission(caller.tenant, ref).public())

    @bp.put("/pap/permission/<ref>")
    def update_permission(ref: str) -> Response:
        caller = _permitted(service)
        service.update_permission(caller.tenant, ref, permission_spec(json_body()))
        return _ok()

    @bp.delete("/pap/permission/<ref>")
    def delete_permission(ref: str) -> Response:
        caller = _permitted(service)
        service.delete_permission(caller.tenant, ref)
        return _ok()

    # -- PAP: relations ----------------------------------------------------------------------------------------------
    @bp.route("/pap/usergroup/<user>/<group>", methods=["POST", "DELETE"])
    def user_group(user: str, group: str) -> Response:
        caller = _permitted(service)
        service.user_group(caller.tenant, user, group, add=request.method == "POST")
        return _ok()

    @bp.route("/pap/userpermissions/<user>/<perm>", methods=["POST", "DELETE"])
    def user_permission(user: str, perm: str) -> Response:
        caller = _permitted(service)
        service.user_permission(caller.tenant, user, perm, add=request.method == "POST")
        return _ok()

    @bp.route("/pap/grouppermissions/<group>/<perm>", methods=["POST", "DELETE"])
    def group_permission(group: str, perm: str) -> Response:
        caller = _permitted(service)
        service.group_permission(caller.tenant, group, perm, add=request.method == "POST")
        return _ok()

    # -- PAP: reports ------------------------------------------------------------------------------------------------
    @bp.get("/pap/user/<ref>/directpermissions")
    def user_direct_permissions(ref: str) -> Response:
        caller = _permitted(service)
        return jsonify({"permissions": [p.public() for p in service.user_direct_permissions(caller.tenant, ref)]})

    @bp.get("/pap/user/<ref>/allpermissions")
    def user_all_permissions(ref: str) -> Response:
        caller = _permitted(service)
        return jsonify({"permissions": [p.public() for p in service.user_all_permissions(caller.tenant, ref)]})

    @bp.get("/pap/user/<ref>/groups")
    def user_groups(ref: str) -> Response:
        caller = _permitted(service)
        return jsonify({"groups": [{"id": g.id, "name": g.name} for g in service.user_groups(caller.tenant, ref)]})

    @bp.get("/pap/group/<ref>/permissions")
    def group_permissions(ref: str) -> Response:
        caller = _permitted(service)
        return jsonify({"permissions": [p.public() for p in service.group_permissions(caller.tenant, ref)]})

    @bp.get("/pap/group/<ref>/users")
    def group_users(ref: str) -> Response:
        caller = _permitted(service)
        users = service.group_users(caller.tenant, ref)
        return jsonify(
            {
                "users": [
                    {"id": str(u.id), "name": u.name, "email": u.email, "username": u.username, "service": u.service}
                    for u in users
                ]
            }
        )

    # -- tenants (administrators of the management tenant) -----------------------------------------------------------
    @bp.get("/tenants")
    def public_list_tenants() -> Response:
        _management_admin(service)
        return jsonify({"tenants": service.tenants()})

    @bp.post("/tenants")
    def public_create_tenant() -> tuple[Response, int]:
        """``{"tenant", "admin"?: {"username","passwd"}}``; 409 when the tenant exists."""
        _management_admin(service)
        body = json_body()
        unknown = set(body) - {"tenant", "admin"}
        if unknown:
            raise Invalid(f"unknown fields {sorted(unknown)}; send tenant and optionally admin")
        out = service.create_tenant_with_admin(body.get("tenant"), body.get("admin"), must_be_new=True)
        return jsonify(out), 201

    @bp.delete("/tenants/<name>")
    def public_delete_tenant(name: str) -> Response:
        _management_admin(service)
        service.delete_tenant(name)
        return _ok("tenant removed", tenant=name)

    # -- PDP ---------------------------------------------------------------------------------------------------------
    @bp.route("/pdp/gateway", methods=_ALL)
    def gateway_decision() -> tuple[Response, int]:
        """The gateway's delegation of a protected request. The original request is named by ``X-Original-Method``
        and ``X-Original-URI``; the token by ``Authorization``. 200 permits (``X-Ondas-Tenant`` and ``X-Ondas-User``
        name the caller); 401 (no, malformed, forged, expired or revoked token) and 403 (valid token, no permission)
        refuse, with the reason in ``X-Ondas-Reason`` and the JSON body."""
        try:
            caller = service.authenticate(_token())
            method, uri = request.headers.get("X-Original-Method"), request.headers.get("X-Original-URI")
            if not method or not uri:
                raise Forbidden("the gateway did not name the original request (X-Original-Method, X-Original-URI)")
            try:
                norm_method, norm_path = pdp.normalize_method(method), pdp.normalize_path(uri)
                pdp.refuse_control_characters(norm_path)
            except Invalid as exc:
                raise Forbidden(f"refused: {exc.message}") from exc
            if service.decide(caller, norm_method, norm_path) != pdp.PERMIT:
                raise Forbidden(f"your permissions do not allow {norm_method} {norm_path}")
        except OndasError as exc:
            refusal = exc if isinstance(exc, Unauthenticated | Forbidden) else Forbidden(exc.message)
            resp = jsonify(refusal.to_dict())
            resp.headers["X-Ondas-Reason"] = pdp.header_safe(refusal.message)
            return resp, refusal.status
        resp = jsonify({"decision": pdp.PERMIT})
        resp.headers["X-Ondas-Tenant"] = caller.tenant
        resp.headers["X-Ondas-User"] = caller.username
        return resp, 200

    @bp.post("/pdp")
    def pdp_decision() -> Response:
        """dojot's PDP: ``{"action","jwt","resource"}`` -> ``{"decision": "permit"|"deny"}``."""
        body = json_body()
        if not {"action", "jwt", "resource"} <= set(body):
            raise Invalid('send {"action": "<method>", "jwt": "<token>", "resource": "<path>"}')
        return jsonify({"decision": service.pdp(body["jwt"], body["action"], body["resource"])})

    # -- internal (platform services only; not routed by the gateway) ------------------------------------------------
    @bp.get("/admin/service-identity")
    def service_identity() -> Response:
        """Who the caller is: ``{"service": "<name>"}`` for a valid ``Authorization: Service <name>:<key>`` (401
        otherwise). Services that serve internal routes forward their caller's header here, since only auth holds
        the master secret the keys derive from (ondas.service_identity.ServiceIdentityVerifier)."""
        return jsonify({"service": service.check_service(request.headers.get("Authorization"))})

    @bp.get("/admin/tenants")
    def list_tenants() -> Response:
        service.check_service(request.headers.get("Authorization"))
        return jsonify({"tenants": service.tenants()})

    @bp.post("/admin/tenants")
    def create_tenant() -> tuple[Response, int]:
        """Create a tenant (idempotent: 200 when it existed) and, optionally, its first admin."""
        service.check_service(request.headers.get("Authorization"))
        body = json_body()
        out = service.create_tenant_with_admin(body.get("tenant"), body.get("admin"))
        return jsonify(out), 201 if out["created"] else 200

    @bp.delete("/admin/tenants/<name>")
    def delete_tenant(name: str) -> Response:
        service.check_service(request.headers.get("Authorization"))
        service.delete_tenant(name)
        return _ok("tenant removed", tenant=name)

    return bp
