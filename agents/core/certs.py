"""Device identity from a verified client certificate, for agents that terminate TLS themselves (the HTTP agent's
TLS listener; Mosquitto does this for MQTT).

The TLS layer has already checked the chain against the platform CA (or refused the handshake). What is left to
the agent:

- the identity: the certificate's subject CN is ``<tenant>:<device-id>``, the same rule as MQTT usernames;
- which CA issued it (:class:`DeviceTrust`, the rule the broker's ondas_certauth plugin applies to MQTT): a
  platform CA's certificate carries its CN; a tenant CA's certificate (x509_mgmt's /trusted-cas, in its
  ``device-trust.tsv``) carries the device that tenant registered it to, never another tenant's;
- revocation: the CRL file (one CRL per trusted CA: ``make up`` gives the agent the on-disk CA's and
  x509_mgmt's, combined by the MQTT agent) is re-read whenever the file changes, so a
  certificate revoked while the agent runs is refused from its next request on, without a restart. A CRL
  that cannot be read refuses every certificate (never "no revocation known, let everyone in").
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from agents.core.payload import DeviceRef, Drop, parse_device
from ondas.ca import load_crls
from ondas.errors import Unavailable

log = logging.getLogger("agents.core.certs")


def certificate_identity(peercert: dict[str, Any]) -> tuple[DeviceRef, int]:
    """The device and serial number of a verified peer certificate (``SSLSocket.getpeercert()``); raises
    :class:`Drop` (``bad_certificate``) when its CN is not ``<tenant>:<device-id>``."""
    cns = [value for rdn in peercert.get("subject", ()) for key, value in rdn if key == "commonName"]
    if len(cns) != 1:
        raise Drop("bad_certificate", "the certificate's subject must have exactly one CN <tenant>:<device-id>")
    try:
        ref = parse_device(cns[0])
    except Drop as exc:
        raise Drop("bad_certificate", f"the certificate's CN is not <tenant>:<device-id>: {exc.detail}") from exc
    try:
        serial = int(str(peercert.get("serialNumber", "")), 16)
    except ValueError as exc:
        raise Drop("bad_certificate", "the certificate has no readable serial number") from exc
    return ref, serial


class RevocationList:
    """The serial numbers a CRL file revokes, re-read when the file changes (checked at most every
    ``recheck_s`` seconds: a ``stat`` per request is cheap, but not free under load)."""

    def __init__(self, path: Path, recheck_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._recheck_s = recheck_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._serials: frozenset[int] | None = None
        self._checked_at = float("-inf")

    def is_revoked(self, serial: int) -> bool:
        """Raises :class:`Unavailable` when the CRL cannot be read (the caller answers 503, never lets in)."""
        return serial in self._current()

    def _current(self) -> frozenset[int]:
        now = self._clock()
        with self._lock:
            if self._serials is not None and now - self._checked_at < self._recheck_s:
                return self._serials
            try:
                st = os.stat(self._path)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stamp != self._stamp or self._serials is None:
                    # Every CRL of the file (the listener trusts several CAs: one CRL each, ondas.ca.combine_crls).
                    crls = load_crls(self._path.read_bytes())
                    self._serials = frozenset(r.serial_number for crl in crls for r in crl)
                    self._stamp = stamp
                    log.info("revocation list loaded", extra={"crl": str(self._path), "revoked": len(self._serials)})
            except (OSError, ValueError) as exc:
                self._serials, self._stamp = None, None
                raise Unavailable(f"the certificate revocation list {self._path} cannot be read: {exc}") from exc
            self._checked_at = now
            return self._serials


@dataclass(frozen=True)
class PeerCertificate:
    """A TLS connection's verified client certificate: ``getpeercert()`` and its DER."""

    info: dict[str, Any]
    der: bytes


def file_stamp(path: Path | None) -> tuple[int, int, int] | None:
    """What tells that a file changed (mtime, size, inode); None when it is missing (or not given)."""
    if path is None:
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class DeviceTrust:
    """The CAs a TLS listener trusts, and the identity each lets a certificate carry: ``platform_cas`` (PEM, the
    platform's CAs: the certificate's CN ``<tenant>:<device-id>``) and ``trust_file`` (x509_mgmt's
    ``device-trust.tsv``: ``ca TAB <tenant> TAB <base64 DER>`` and ``cert TAB <SHA-256 hex> TAB
    <tenant>:<device-id>`` lines: a tenant CA's certificate must be registered by that tenant to one of its
    devices). Both are re-read when they change (checked at most every ``recheck_s``)."""

    def __init__(
        self,
        platform_cas: Path,
        trust_file: Path | None,
        recheck_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._platform = platform_cas
        self._trust_file = trust_file
        self._recheck_s = recheck_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stamps: tuple[Any, Any] | None = None
        self._cas: list[tuple[str | None, x509.Certificate]] = []
        self._registered: dict[str, str] = {}
        self._checked_at = float("-inf")

    def identity(self, der: bytes) -> tuple[DeviceRef, int | None]:
        """The device a verified certificate acts for, and its serial number when a platform CA issued it (to
        check against the CRLs; a tenant CA's certificate is revoked by leaving the trust file). Raises
        :class:`Drop` (``bad_certificate``) with the reason when no trusted CA lets it act for anyone."""
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise Drop("bad_certificate", f"the client certificate cannot be read: {exc}") from exc
        cas, registered = self._current()
        fingerprint = leaf.fingerprint(hashes.SHA256()).hex().upper()
        refusal = "no CA the platform or a tenant trusts issued it"
        for tenant, ca in cas:
            if ca.subject != leaf.issuer:
                continue
            try:
                leaf.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            if tenant is None:
                return _cn_identity(leaf), leaf.serial_number
            owner = registered.get(fingerprint)
            if owner is None:
                refusal = "issued by a tenant's CA but not registered with x509_mgmt (or revoked)"
            elif not owner.startswith(f"{tenant}:"):
                refusal = "registered by another tenant than the one trusting its CA"
            else:
                return parse_device(owner), None
        raise Drop("bad_certificate", refusal)

    def _current(self) -> tuple[list[tuple[str | None, x509.Certificate]], dict[str, str]]:
        now = self._clock()
        with self._lock:
            if now - self._checked_at < self._recheck_s:
                return self._cas, self._registered
            stamps = (file_stamp(self._platform), file_stamp(self._trust_file))
            if stamps != self._stamps:
                self._load()
                self._stamps = stamps
            self._checked_at = now
            return self._cas, self._registered

    def _load(self) -> None:
        try:
            platform = x509.load_pem_x509_certificates(self._platform.read_bytes())
        except (OSError, ValueError) as exc:
            self._cas, self._registered = [], {}
            raise Unavailable(f"the platform CA file {self._platform} cannot be read: {exc}") from exc
        cas: list[tuple[str | None, x509.Certificate]] = [(None, c) for c in platform]
        registered: dict[str, str] = {}
        lines: list[str] = []
        if self._trust_file is not None:
            try:
                lines = self._trust_file.read_text().splitlines()
            except FileNotFoundError:
                lines = []
            except OSError as exc:
                raise Unavailable(f"the device trust file {self._trust_file} cannot be read: {exc}") from exc
        for number, line in enumerate(lines, 1):
            kind, _, rest = line.partition("\t")
            key, _, value = rest.partition("\t")
            try:
                if kind == "ca" and key and value:
                    cas.append((key, x509.load_der_x509_certificate(base64.b64decode(value, validate=True))))
                elif kind == "cert" and key and ":" in value:
                    registered[key.upper()] = value
            except ValueError:
                log.warning("bad line in the device trust file, skipped", extra={"line": number})
        self._cas, self._registered = cas, registered
        log.info("device trust loaded", extra={"cas": len(cas), "registered_certificates": len(registered)})


def _cn_identity(cert: x509.Certificate) -> DeviceRef:
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(cns) != 1:
        raise Drop("bad_certificate", "the certificate's subject must have exactly one CN <tenant>:<device-id>")
    try:
        return parse_device(str(cns[0].value))
    except Drop as exc:
        raise Drop("bad_certificate", f"the certificate's CN is not <tenant>:<device-id>: {exc.detail}") from exc
