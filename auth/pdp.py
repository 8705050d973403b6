"""The policy decision: which permissions apply to a request, and what they decide. No I/O.

A permission applies to a request when its ``method`` pattern matches the whole HTTP method and its ``path``
pattern matches the whole normalised path (Python regular expressions, ``re.fullmatch``). A path pattern that ends
in ``/(.*)`` (as dojot's catalogue writes them: ``/template/(.*)``) also applies to the collection it names
(``/template``), so ``all_template`` covers creating and listing templates too. Among the permissions of
the user (direct ones and those of every group the user is in): any applicable ``deny`` denies; otherwise any
applicable ``permit`` permits; otherwise the request is denied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import unquote

from auth.models import Permission
from ondas.errors import Invalid

PERMIT = "permit"
DENY = "deny"
METHOD_RE = re.compile(r"^[A-Z]{1,16}$")
MAX_PATH = 4096
_ANY_BELOW = "/(.*)"
# 0x00-0x1f and 0x7f, raw or percent-escaped: never part of a path any service routes.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_HEADER = re.compile(r"[^\x20-\x7e]|[\\%]")
MAX_REASON = 300


def refuse_control_characters(path: str) -> None:
    """The gateway's question only (``/pdp/gateway``): a normalised path with a control character (0x00-0x1f,
    0x7f, percent-escaped in the request) is never one a service routes; refused rather than decided."""
    if _CONTROL.search(path):
        raise Invalid("control characters in the path")


def header_safe(text: str) -> str:
    """``text`` fit for a response header (X-Ondas-Reason, which the gateway also puts in a JSON string): printable
    ASCII only: double quotes become single ones; control and non-ASCII characters, backslashes and ``%`` are
    percent-escaped (UTF-8); at most MAX_REASON characters. Request data that reaches a refusal's reason can never
    split or break the header, nor the JSON string the gateway makes of it."""
    out = _UNSAFE_HEADER.sub(
        lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8", "replace")), text.replace('"', "'")
    )
    return out if len(out) <= MAX_REASON else out[: MAX_REASON - 3] + "..."


def normalize_method(method: object) -> str:
    if not isinstance(method, str) or not METHOD_RE.match(method.strip().upper()):
        raise Invalid("the action must be an HTTP method such as GET or POST", action=str(method)[:40])
    return method.strip().upper()


def normalize_path(resource: object) -> str:
    """The path a request addresses, as the services route it: query and fragment dropped, percent-escapes
    decoded once, repeated slashes merged, ``.`` and ``..`` segments resolved. Two spellings of one path (for
    example ``/auth/%75ser`` and ``/auth//user/./``) get one decision."""
    if not isinstance(resource, str) or not resource:
        raise Invalid("the resource must be a non-empty path such as /device")
    if len(resource) > MAX_PATH:
        raise Invalid(f"the resource has at most {MAX_PATH} characters")
    path = resource.split("?", 1)[0].split("#", 1)[0]
    try:
        path = unquote(path, errors="strict") if "%" in path else path
    except UnicodeDecodeError as exc:
        raise Invalid("the resource has percent-escapes that are not UTF-8") from exc
    if "\x00" in path:
        raise Invalid("the resource must not contain NUL characters")
    if not path.startswith("/"):
        path = "/" + path
    segments: list[str] = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if segments:
                segments.pop()
            continue
        segments.append(seg)
    out = "/" + "/".join(segments)
    if path.endswith("/") and segments:
        out += "/"
    return out


@lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def applies(permission: Permission, method: str, path: str) -> bool:
    method_re, path_re = _compiled(permission.method), _compiled(permission.path)
    if method_re is None or path_re is None:
        return False  # never stored (validated on write); ignored rather than trusted
    if method_re.fullmatch(method) is None:
        return False
    if path_re.fullmatch(path) is not None:
        return True
    return permission.path.endswith(_ANY_BELOW) and not path.endswith("/") and path_re.fullmatch(path + "/") is not None


def decide(permissions: Iterable[Permission], method: str, path: str) -> str:
    """``permit`` or ``deny`` for ``method`` on ``path`` (both already normalised)."""
    permitted = False
    for perm in permissions:
        if applies(perm, method, path):
            if perm.permission == DENY:
                return DENY
            permitted = True
    return PERMIT if permitted else DENY
