"""x509_mgmt's certificates, honoured by the broker: the combined CRL kept current, revoked identities kicked.

x509_mgmt (the device certificate authority) writes its CRL to a file (``<data>/x509/crl.pem``, within a second of
each revocation, and whenever it regenerates it) and announces each revocation on
``<tenant>.dojot.x509-identity-mgmt.certificates`` (``certificate.revoked``, docs/kafka-contract.md). Mosquitto
and the HTTP agent read one CRL file holding every trusted CA's CRL; so here:

- :class:`CrlWatcher` rewrites that file whenever one of its sources changes (any revocation, the CA's periodic
  regeneration before ``nextUpdate``) and sends Mosquitto SIGHUP;
- :class:`CertificateEvents` handles ``certificate.revoked``: it waits until the revoked serial is on the CA's CRL
  file (x509_mgmt's relay writes it; the event may arrive first), makes the combined CRL current and the broker
  reload it, then ends the live sessions of the certificate's identity (the dynamic security plugin), so the
  device cannot reconnect with it. A revoked certificate of a tenant's own CA is not on any CRL: the broker's
  plugin stops accepting it when x509_mgmt drops it from ``device-trust.tsv``, so that is what is waited for.
  Ending sessions is per identity: a device's other certificates' sessions end too and reconnect.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Message

from agents.core.certs import file_stamp
from agents.mqtt.revocation import CertificateRevoker
from ondas.ca import load_crls
from ondas.errors import Unavailable
from ondas.topics import parse

log = logging.getLogger("agents.mqtt.certificates")

REVOKED = "certificate.revoked"


class CrlWatcher:
    """A daemon thread that calls ``revoker.refresh()`` whenever a source CRL file changes (checked every
    ``interval_s``), and once at start (x509_mgmt may have written its CRL before this process started)."""

    def __init__(self, revoker: CertificateRevoker, interval_s: float = 0.5) -> None:
        self._revoker = revoker
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._stamps: dict[Path, tuple[int, int, int] | None] | None = None
        self._thread = threading.Thread(target=self._run, name="crl-watcher", daemon=True)
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def check(self) -> bool:
        """One round: refresh when a source changed since the last good round. True when the broker reloaded."""
        stamps = {p: file_stamp(p) for p in self._revoker.sources}
        if stamps == self._stamps:
            return False
        changed = self._revoker.refresh()
        self._stamps = stamps
        return changed

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.check():
                    log.info("a CA's CRL changed: combined CRL rewritten, broker reloaded")
            except Unavailable as exc:
                self.failures += 1
                log.warning("cannot refresh the combined CRL (retrying)", extra={"error": str(exc)})
            self._stop.wait(self._interval_s)


def identity_of(event: dict[str, Any], tenant: str) -> str | None:
    """The MQTT identity (the username the broker's certificate plugin gives its sessions) of an event's
    certificate: a platform certificate's CN when that is ``<tenant>:<device-id>`` of the event's tenant, else
    (and always for a tenant CA's certificate) the device it belongs to."""
    data = event.get("data") or {}
    if not data.get("issuedByDojotPki"):
        device = (data.get("belongsTo") or {}).get("device")
        return f"{tenant}:{device}" if device else None
    subject = str(data.get("subjectDN") or "")
    for part in subject.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().upper() == "CN" and value.startswith(f"{tenant}:"):
            return value
    device = (data.get("belongsTo") or {}).get("device")
    return f"{tenant}:{device}" if device else None


class CertificateEvents:
    """The handler of a batch of certificate events (``ConsumerLoop``); raises Unavailable to have it retried."""

    def __init__(
        self,
        revoker: CertificateRevoker,
        x509_crl_file: Path,
        end_sessions: Callable[[str], None] | None,
        crl_wait_s: float = 10.0,
        trust_file: Path | None = None,
    ) -> None:
        self._revoker = revoker
        self._trust_file = trust_file
        self._x509_crl = x509_crl_file
        self._end_sessions = end_sessions
        self._crl_wait_s = crl_wait_s

    def handle_batch(self, messages: list[Message]) -> None:
        for message in messages:
            self.handle(message)

    def handle(self, message: Message) -> None:
        topic = message.topic() or ""
        try:
            tenant = parse(topic).tenant
        except ValueError:
            log.warning("certificate event on a topic outside the grammar, skipped", extra={"topic": topic})
            return
        try:
            event = json.loads(message.value() or b"")
        except ValueError:
            log.warning("certificate event is not JSON, skipped", extra={"topic": topic})
            return
        if not isinstance(event, dict) or event.get("event") != REVOKED:
            return
        identity = identity_of(event, tenant)
        data = event.get("data") or {}
        if data.get("issuedByDojotPki"):
            try:
                serial = int(str(data.get("serialNumber") or ""), 16)
            except ValueError:
                serial = None
            if serial is not None:
                self._wait_on_crl(serial)
        elif self._trust_file is not None and data.get("fingerprint"):
            # A tenant CA's certificate: the broker's plugin accepts it while it is in the trust file.
            self._wait_off_trust_file(str(data["fingerprint"]), identity)
        # The combined CRL current (and the broker reloaded) before the sessions end: no reconnect with it.
        self._revoker.refresh()
        if identity and self._end_sessions is not None:
            self._end_sessions(identity)
        log.info(
            "certificate revoked: CRL reloaded, sessions ended",
            extra={"identity": identity, "fingerprint": data.get("fingerprint")},
        )

    def _wait_off_trust_file(self, fingerprint: str, identity: str | None) -> None:
        """Until the trust file no longer maps ``fingerprint`` to ``identity`` (to anyone, without one)."""
        assert self._trust_file is not None
        deadline = time.monotonic() + self._crl_wait_s
        needle = f"cert\t{fingerprint.replace(':', '').upper()}\t" + (f"{identity}\n" if identity else "")
        while True:
            try:
                if needle not in self._trust_file.read_text():
                    return
            except FileNotFoundError:
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"certificate {fingerprint} is still in {self._trust_file}")
            time.sleep(0.1)

    def _wait_on_crl(self, serial: int) -> None:
        deadline = time.monotonic() + self._crl_wait_s
        while True:
            try:
                if any(r.serial_number == serial for crl in load_crls(self._x509_crl.read_bytes()) for r in crl):
                    return
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise Unavailable(f"serial {serial:x} is not on {self._x509_crl} yet")
            time.sleep(0.1)
