"""Domain types of the certificate authority and the parsing of dojot's request bodies and query parameters.

No I/O. Shapes and names are dojot x509-identity-mgmt's (``js/schemas/*.json``, ``api-description.apib``): a
fingerprint is the SHA-256 of the certificate's DER, upper-case hexadecimal pairs separated by ``:``; records
carry ``fingerprint``, ``pem``, ``belongsTo``, ``issuedByDojotPki``, ``autoRegistered``, ``tenant``,
``createdAt``; lists are paged with ``page``/``limit``, projected with ``fields`` and filtered with ``key=val``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from ondas.errors import Invalid

# --- fingerprints, ids, times -----------------------------------------------------------------------------------

_FINGERPRINT_RE = re.compile(r"^([A-Fa-f0-9]{2}:?){32}$")
#: A device id as the device manager looks it up (device_manager: 1-16 hexadecimal characters).
DEVICE_ID_RE = re.compile(r"^[0-9a-fA-F]{1,16}$")
#: The longest PEM text (a CSR, a certificate chain) a body may hold, as dojot's schemas allow.
MAX_PEM_CHARS = 65536
_PEM_CSR_RE = re.compile(
    r"^-{5}BEGIN CERTIFICATE REQUEST-{5}(\r\n|\r|\n)([-A-Za-z0-9+/=]{1,64}(\r\n|\r|\n))+"
    r"-{5}END CERTIFICATE REQUEST-{5}(\r\n|\r|\n)?$"
)
_PEM_CERTS_RE = re.compile(
    r"^(-{5}BEGIN CERTIFICATE-{5}(\r\n|\r|\n)([-A-Za-z0-9+/=]{1,64}(\r\n|\r|\n))+"
    r"-{5}END CERTIFICATE-{5}(\r\n|\r|\n)?)+$"
)


def format_fingerprint(digest: bytes) -> str:
    """dojot's form of a SHA-256 digest: ``D3:20:80:...`` (32 upper-case pairs)."""
    return ":".join(f"{b:02X}" for b in digest)


def parse_fingerprint(raw: object, what: str = "fingerprint") -> str:
    """A fingerprint as given in a path or body (pairs with or without ``:``, any case), in dojot's form."""
    if not isinstance(raw, str) or len(raw) > 95 or not _FINGERPRINT_RE.match(raw):
        raise Invalid(
            f"{what} must be a SHA-256 fingerprint: 32 hexadecimal pairs separated by ':' "
            "(as `openssl x509 -noout -fingerprint -sha256` prints it)",
            value=raw if isinstance(raw, str) and len(raw) <= 200 else None,
        )
    hexed = raw.replace(":", "")
    if len(hexed) != 64:
        raise Invalid(f"{what} must be 32 hexadecimal pairs", value=raw)
    return ":".join(hexed[i : i + 2] for i in range(0, 64, 2)).upper()


def parse_device_id(raw: object, what: str = "belongsTo.device") -> str:
    if not isinstance(raw, str) or not DEVICE_ID_RE.match(raw):
        raise Invalid(f"{what} must be a device id: 1-16 hexadecimal characters", value=_short(raw))
    return raw.lower()


def iso(t: dt.datetime) -> str:
    """dojot's timestamps: ISO 8601 UTC with milliseconds and ``Z`` (``2020-06-05T20:01:11.286Z``)."""
    u = t.astimezone(dt.UTC)
    return u.strftime("%Y-%m-%dT%H:%M:%S.") + f"{u.microsecond // 1000:03d}Z"


def _short(raw: object) -> object:
    if isinstance(raw, str):
        return raw if len(raw) <= 100 else raw[:100] + "..."
    return raw if isinstance(raw, int | float | bool) or raw is None else type(raw).__name__


# --- records -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateRecord:
    """A certificate of a tenant: issued by the platform's CA from a CSR, or external (a trusted CA's)."""

    tenant: str
    fingerprint: str
    pem: str
    serial: str  # lower-case hex
    subject_dn: str
    not_before: dt.datetime
    not_after: dt.datetime
    issued_by_platform: bool
    auto_registered: bool
    ca_fingerprint: str | None
    belongs_to: dict[str, Any]
    created_at: dt.datetime
    modified_at: dt.datetime
    created_by: str

    @property
    def device_id(self) -> str | None:
        device = self.belongs_to.get("device")
        return device if isinstance(device, str) else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "pem": self.pem,
            "subjectDN": self.subject_dn,
            "serialNumber": self.serial.upper(),
            "validity": {"notBefore": iso(self.not_before), "notAfter": iso(self.not_after)},
            "issuedByDojotPki": self.issued_by_platform,
            "autoRegistered": self.auto_registered,
            "belongsTo": dict(self.belongs_to),
            "tenant": self.tenant,
            "createdAt": iso(self.created_at),
            "modifiedAt": iso(self.modified_at),
        }
        if self.ca_fingerprint is not None:
            out["caFingerprint"] = self.ca_fingerprint
        return out


CERTIFICATE_FIELDS = (
    "fingerprint",
    "pem",
    "subjectDN",
    "serialNumber",
    "validity",
    "issuedByDojotPki",
    "autoRegistered",
    "caFingerprint",
    "belongsTo",
    "tenant",
    "createdAt",
    "modifiedAt",
)


@dataclass(frozen=True)
class TrustedCa:
    tenant: str
    fingerprint: str
    pem: str
    subject_dn: str
    not_before: dt.datetime
    not_after: dt.datetime
    allow_auto_registration: bool
    created_at: dt.datetime
    modified_at: dt.datetime
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowAutoRegistration": self.allow_auto_registration,
            "caFingerprint": self.fingerprint,
            "caPem": self.pem,
            "subjectDN": self.subject_dn,
            "validity": {"notBefore": iso(self.not_before), "notAfter": iso(self.not_after)},
            "tenant": self.tenant,
            "createdAt": iso(self.created_at),
            "modifiedAt": iso(self.modified_at),
        }


TRUSTED_CA_FIELDS = (
    "allowAutoRegistration",
    "caFingerprint",
    "caPem",
    "subjectDN",
    "validity",
    "tenant",
    "createdAt",
    "modifiedAt",
)


def project(record: dict[str, Any], fields: tuple[str, ...] | None) -> dict[str, Any]:
    """dojot's ``fields``: only these keys, in the record's order (all of them without ``fields``)."""
    if fields is None:
        return record
    return {k: v for k, v in record.items() if k in fields}


def parse_fields(raw: str | None, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    if raw is None or raw.strip() == "":
        return None
    names = tuple(dict.fromkeys(n.strip() for n in raw.split(",") if n.strip()))
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise Invalid(
            f"unknown field(s) in 'fields': {', '.join(unknown[:10])}; the fields are {', '.join(allowed)}",
        )
    return names


# --- paging ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageRequest:
    page: int = 1
    limit: int = 25


def parse_page(raw_page: str | None, raw_limit: str | None, default_limit: int, max_limit: int) -> PageRequest:
    """dojot's ``page`` (>= 1, default 1) and ``limit`` (>= 1, default 25, at most the maximum: a larger one is
    reduced to it, as dojot's paginator does)."""
    page = _positive(raw_page, "page", 1)
    limit = min(_positive(raw_limit, "limit", default_limit), max_limit)
    return PageRequest(page=page, limit=limit)


def _positive(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\+?[0-9]{1,9}", raw.strip()):
        raise Invalid(f"query parameter {name} must be a positive integer, got {_short(raw)!r}")
    value = int(raw.strip())
    if value < 1:
        raise Invalid(f"query parameter {name} must be a positive integer, got {value}")
    return value


# --- filters (dojot's key=val, mongo-querystring operators) -------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    """``key op value``: op is one of ``eq ne prefix suffix contains gt gte lt lte``."""

    key: str
    op: str
    value: Any


# key -> kind ("text", "bool", "time")
CERTIFICATE_FILTERS = {
    "fingerprint": "text",
    "subjectDN": "text",
    "serialNumber": "text",
    "caFingerprint": "text",
    "belongsTo.device": "text",
    "issuedByDojotPki": "bool",
    "autoRegistered": "bool",
    "createdAt": "time",
    "modifiedAt": "time",
}
TRUSTED_CA_FILTERS = {
    "caFingerprint": "text",
    "subjectDN": "text",
    "allowAutoRegistration": "bool",
    "createdAt": "time",
    "modifiedAt": "time",
}
_RESERVED_PARAMS = frozenset({"page", "limit", "fields", "sortBy"})


def parse_filters(args: list[tuple[str, str]], allowed: dict[str, str]) -> list[Condition]:
    """The ``key=val`` filters of a list's query string. Values: ``val`` (equal), ``!val`` (not equal),
    ``^val`` (starts with), ``$val`` (ends with), ``~val`` (contains, ignoring case); times and booleans take
    ``>``, ``>=``, ``<``, ``<=`` and plain values. ``tenant`` is always the caller's and may be given only as it."""
    out: list[Condition] = []
    for key, raw in args:
        if key in _RESERVED_PARAMS:
            continue
        if key == "tenant":
            out.append(Condition("tenant", "eq", raw))
            continue
        kind = allowed.get(key)
        if kind is None:
            raise Invalid(
                f"unknown query parameter {_short(key)!r}; filters are {', '.join(sorted(allowed))} "
                "(besides page, limit and fields)"
            )
        out.append(_condition(key, kind, raw))
    return out


def _condition(key: str, kind: str, raw: str) -> Condition:
    if len(raw) > 200:
        raise Invalid(f"filter {key} is longer than 200 characters")
    if kind == "text":
        for prefix, op in (("!", "ne"), ("^", "prefix"), ("$", "suffix"), ("~", "contains")):
            if raw.startswith(prefix):
                return Condition(key, op, raw[len(prefix) :])
        return Condition(key, "eq", raw)
    op = "eq"
    for prefix, name in ((">=", "gte"), ("<=", "lte"), (">", "gt"), ("<", "lt"), ("!", "ne")):
        if raw.startswith(prefix):
            op, raw = name, raw[len(prefix) :]
            break
    if kind == "bool":
        if op not in ("eq", "ne") or raw not in ("true", "false"):
            raise Invalid(f"filter {key} takes true or false (or !true, !false)")
        return Condition(key, op, raw == "true")
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(f"filter {key} takes an ISO 8601 time, optionally after >, >=, < or <=") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return Condition(key, op, when)


# --- request bodies ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CsrRequest:
    csr: str
    device_id: str | None  # from belongsTo.device, when given


@dataclass(frozen=True)
class ExternalRequest:
    chain: str
    ca_fingerprint: str | None
    device_id: str | None


@dataclass(frozen=True)
class TrustedCaRequest:
    pem: str
    allow_auto_registration: bool = False


@dataclass(frozen=True)
class OwnerChange:
    """``belongsTo`` as given: ``{"device": id}`` or ``{"device": null}`` (dissociate)."""

    belongs_to: dict[str, Any] = field(default_factory=dict)


def _only(body: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = [k for k in body if k not in allowed]
    if unknown:
        raise Invalid(
            f"unknown field(s) in the {what}: {', '.join(repr(_short(k)) for k in unknown[:10])}; "
            f"allowed: {', '.join(allowed)}"
        )


def _pem_text(body: dict[str, Any], key: str, pattern: re.Pattern[str], kind: str) -> str:
    value = body[key]
    if not isinstance(value, str):
        raise Invalid(f"{key} must be a string holding {kind} in PEM format")
    if len(value) > MAX_PEM_CHARS:
        raise Invalid(f"{key} is longer than {MAX_PEM_CHARS} characters")
    if not pattern.match(value):
        raise Invalid(
            f"{key} is not {kind} in PEM format (a '-----BEGIN ...-----' line, base64 lines of at most 64 "
            "characters, an '-----END ...-----' line; line breaks as \\n or \\r\\n)"
        )
    return value


def parse_belongs_to(raw: object, allow_null_device: bool) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise Invalid('belongsTo must be an object such as {"device": "<device id>"}')
    _only(raw, ("device", "application"), "belongsTo object")
    if "application" in raw:
        raise Invalid("belongsTo.application is not supported: this platform issues certificates to devices only")
    if "device" not in raw:
        raise Invalid('belongsTo must name the device: {"device": "<device id>"}')
    device = raw["device"]
    if device is None:
        if not allow_null_device:
            raise Invalid("belongsTo.device must be a device id here")
        return {"device": None}
    return {"device": parse_device_id(device)}


def parse_create(body: dict[str, Any]) -> CsrRequest | ExternalRequest:
    """``POST /certificates``: ``{"csr", "belongsTo"?}`` or ``{"certificateChain", "caFingerprint"?, "belongsTo"?}``."""
    _only(body, ("csr", "certificateChain", "caFingerprint", "belongsTo"), "request body")
    device_id: str | None = None
    if "belongsTo" in body:
        device_id = parse_belongs_to(body["belongsTo"], allow_null_device=True).get("device")
    has_csr, has_chain = "csr" in body, "certificateChain" in body
    if has_csr == has_chain:
        raise Invalid(
            "the body must hold either 'csr' (to issue a certificate) or 'certificateChain' (to register one)"
        )
    if has_csr:
        if "caFingerprint" in body:
            raise Invalid("caFingerprint goes with certificateChain, not with csr")
        return CsrRequest(csr=_pem_text(body, "csr", _PEM_CSR_RE, "a certificate request"), device_id=device_id)
    ca_fp = parse_fingerprint(body["caFingerprint"], "caFingerprint") if "caFingerprint" in body else None
    chain = _pem_text(body, "certificateChain", _PEM_CERTS_RE, "one or more certificates")
    return ExternalRequest(chain=chain, ca_fingerprint=ca_fp, device_id=device_id)


def parse_trusted_ca(body: dict[str, Any]) -> TrustedCaRequest:
    _only(body, ("caPem", "allowAutoRegistration"), "request body")
    if "caPem" not in body:
        raise Invalid("the body must hold caPem: the CA certificate in PEM format")
    pem = _pem_text(body, "caPem", _PEM_CERTS_RE, "a certificate")
    auto = body.get("allowAutoRegistration", False)
    if not isinstance(auto, bool):
        raise Invalid("allowAutoRegistration must be true or false")
    return TrustedCaRequest(pem=pem, allow_auto_registration=auto)


def parse_trusted_ca_update(body: dict[str, Any]) -> bool:
    _only(body, ("allowAutoRegistration",), "request body")
    auto = body.get("allowAutoRegistration")
    if not isinstance(auto, bool):
        raise Invalid("the body must hold allowAutoRegistration: true or false")
    return auto


def parse_owner_change(body: dict[str, Any]) -> OwnerChange:
    _only(body, ("belongsTo",), "request body")
    if "belongsTo" not in body:
        raise Invalid('the body must hold belongsTo: {"device": "<device id>"} (or {"device": null})')
    return OwnerChange(belongs_to=parse_belongs_to(body["belongsTo"], allow_null_device=True))
