"""HTTP transport of the certificate authority: parse, call the service, render dojot's shapes.

Served under ``/x509/v1`` (the gateway routes that prefix unchanged: ``strip_path: false``), so paging links and
the paths auth's permissions are written for are the ones clients use.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, request

from ondas.web import json_body, principal
from x509_mgmt.models import (
    CERTIFICATE_FIELDS,
    CERTIFICATE_FILTERS,
    TRUSTED_CA_FIELDS,
    TRUSTED_CA_FILTERS,
    PageRequest,
    parse_create,
    parse_fields,
    parse_filters,
    parse_fingerprint,
    parse_owner_change,
    parse_page,
    parse_trusted_ca,
    parse_trusted_ca_update,
    project,
)
from x509_mgmt.service import X509Service

PREFIX = "/x509/v1"


def _no_content() -> Response:
    return Response(status=204)


def paging(page: PageRequest, total: int) -> dict[str, Any]:
    """dojot's ``paging``: previous/current/next ({number, url}; previous and next null when there is none)."""
    pages = math.ceil(total / page.limit) if total else 0

    def link(number: int) -> dict[str, Any]:
        args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("page", "limit")]
        query = urlencode([("page", str(number)), ("limit", str(page.limit)), *args])
        return {"number": number, "url": f"{request.path}?{query}"}

    return {
        "previous": link(page.page - 1) if page.page > 1 else None,
        "current": link(page.page),
        "next": link(page.page + 1) if page.page < pages else None,
        "totalItems": total,
        "totalPages": pages,
        "limitPerPage": page.limit,
    }


def blueprint(service: X509Service, default_limit: int = 25, max_limit: int = 250) -> Blueprint:
    bp = Blueprint("x509_mgmt", __name__, url_prefix=PREFIX)

    def page() -> PageRequest:
        return parse_page(request.args.get("page"), request.args.get("limit"), default_limit, max_limit)

    def user() -> tuple[str, str]:
        p = principal()
        return p.tenant, p.username

    # -- the platform CA -------------------------------------------------------------------------------------
    @bp.get("/ca")
    def get_ca() -> dict[str, Any]:
        principal()
        return service.ca_info()

    @bp.get("/ca/crl")
    def get_crl() -> dict[str, Any]:
        principal()
        return {"crl": service.crl_pem()}

    # -- certificates ---------------------------------------------------------------------------------------
    @bp.post("/certificates")
    def create_certificate() -> tuple[dict[str, Any], int]:
        tenant, username = user()
        return service.create(tenant, username, parse_create(json_body())), 201

    @bp.get("/certificates")
    def list_certificates() -> dict[str, Any]:
        tenant = principal().tenant
        fields = parse_fields(request.args.get("fields"), CERTIFICATE_FIELDS)
        conditions = parse_filters(list(request.args.items(multi=True)), CERTIFICATE_FILTERS)
        p = page()
        items, total = service.list_certificates(tenant, conditions, p)
        return {"paging": paging(p, total), "certificates": [project(c.to_dict(), fields) for c in items]}

    @bp.get("/certificates/<raw_fp>")
    def get_certificate(raw_fp: str) -> dict[str, Any]:
        tenant = principal().tenant
        fields = parse_fields(request.args.get("fields"), CERTIFICATE_FIELDS)
        return project(service.get_certificate(tenant, parse_fingerprint(raw_fp)).to_dict(), fields)

    @bp.delete("/certificates/<raw_fp>")
    def revoke_certificate(raw_fp: str) -> Response:
        tenant, username = user()
        service.revoke(tenant, username, parse_fingerprint(raw_fp))
        return _no_content()

    @bp.patch("/certificates/<raw_fp>")
    def change_owner(raw_fp: str) -> Response:
        tenant, username = user()
        fingerprint = parse_fingerprint(raw_fp)
        change = parse_owner_change(json_body())
        service.change_owner(tenant, username, fingerprint, change.belongs_to)
        return _no_content()

    @bp.delete("/certificates/<raw_fp>/belongsto")
    def remove_owner(raw_fp: str) -> Response:
        tenant, username = user()
        service.change_owner(tenant, username, parse_fingerprint(raw_fp), {})
        return _no_content()

    # -- trusted CAs -----------------------------------------------------------------------------------------
    @bp.post("/trusted-cas")
    def register_trusted_ca() -> tuple[dict[str, Any], int]:
        tenant, username = user()
        ca = service.register_trusted_ca(tenant, username, parse_trusted_ca(json_body()))
        return {"caFingerprint": ca.fingerprint}, 201

    @bp.get("/trusted-cas")
    def list_trusted_cas() -> dict[str, Any]:
        tenant = principal().tenant
        fields = parse_fields(request.args.get("fields"), TRUSTED_CA_FIELDS)
        conditions = parse_filters(list(request.args.items(multi=True)), TRUSTED_CA_FILTERS)
        p = page()
        items, total = service.list_trusted_cas(tenant, conditions, p)
        return {"paging": paging(p, total), "trusted-cas": [project(c.to_dict(), fields) for c in items]}

    @bp.get("/trusted-cas/<raw_fp>")
    def get_trusted_ca(raw_fp: str) -> dict[str, Any]:
        tenant = principal().tenant
        fields = parse_fields(request.args.get("fields"), TRUSTED_CA_FIELDS)
        return project(service.get_trusted_ca(tenant, parse_fingerprint(raw_fp, "caFingerprint")).to_dict(), fields)

    @bp.patch("/trusted-cas/<raw_fp>")
    def update_trusted_ca(raw_fp: str) -> Response:
        tenant, username = user()
        fingerprint = parse_fingerprint(raw_fp, "caFingerprint")
        service.set_auto_registration(tenant, username, fingerprint, parse_trusted_ca_update(json_body()))
        return _no_content()

    @bp.delete("/trusted-cas/<raw_fp>")
    def delete_trusted_ca(raw_fp: str) -> Response:
        tenant, username = user()
        service.delete_trusted_ca(tenant, username, parse_fingerprint(raw_fp, "caFingerprint"))
        return _no_content()

    return bp
