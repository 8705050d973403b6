"""Device identity from a verified client certificate, for agents that terminate TLS themselves (the HTTP agent's
TLS listener; Mosquitto does this for MQTT).

The TLS layer has already checked the chain against the platform CA (or refused the handshake). What is left to
the agent:

- the identity: the certificate's subject CN is ``<tenant>:<device-id>``, the same rule as MQTT usernames;
- revocation: the CRL file (one CRL per trusted CA: ``make up`` gives the agent the on-disk CA's and
  x509_mgmt's, combined by the MQTT agent) is re-read whenever the file changes, so a
  certificate revoked while the agent runs is refused from its next request on, without a restart. A CRL
  that cannot be read refuses every certificate (never "no revocation known, let everyone in").
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
