"""Certificate revocation for mutual-TLS devices: a removed (or, later, disabled) device's certificates must stop
working at once.

The broker's certificate plugin (broker_plugin/ondas_certauth.c) checks client certificates against the combined
CRL file, re-read when it changes; live sessions stay up. So revoking an identity ``<tenant>:<device-id>`` is:

1. mark every certificate the on-disk CA issued to it as revoked in the CA's records and rewrite the CRL
   (ondas.ca; x509_mgmt revokes its own certificates of a removed device, see certificates.py), then rewrite the
   combined CRL the listeners read (both CAs' CRLs in one file);
2. SIGHUP Mosquitto (its PID from its pid file): new logins with those certificates fail (the plugin reads the
   new CRL at the next login anyway; the reload is kept for a listener configured with ``crlfile``);
3. end the live sessions: the caller does that through the dynamic security plugin (Provisioner.disable or
   Provisioner.remove), after this step, so a kicked device cannot reconnect with the old CRL.

Everything here is blocking file work: it runs on the device-events consumer thread. Failures raise
Unavailable, so the event is retried rather than committed with the device still able to connect.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter

from agents.mqtt.settings import Settings
from ondas.ca import CRL_FILE, combine_crls, revoke_identity, revoke_tenant
from ondas.errors import Unavailable
from ondas.settings import SettingsError

log = logging.getLogger("agents.mqtt.revocation")

REVOKED = Counter("mqtt_agent_certificates_revoked_total", "Device certificates revoked (added to the CRL)", ["tenant"])
BROKER_PROCESS_NAME = "mosquitto"


class CertificateRevoker:
    """``combined``: the CRL file the listeners read, rewritten from ``sources`` (the on-disk CA's CRL and
    x509_mgmt's, ondas.ca.combine_crls) before each reload; None: they read ``crl_file`` itself."""

    def __init__(
        self,
        pki_dir: Path,
        crl_file: Path,
        broker_pid_file: Path,
        combined: Path | None = None,
        sources: list[Path] | None = None,
    ) -> None:
        self._pki_dir = pki_dir
        self._crl_file = crl_file
        self._pid_file = broker_pid_file
        self.combined = combined
        self.sources = sources if sources is not None else [crl_file]
        self._lock = threading.Lock()
        self._reload_pending = False

    def combine(self) -> bool:
        """Rewrite the combined CRL from its sources; True when it changed (the broker must then reload)."""
        if self.combined is None:
            return False
        with self._lock:
            try:
                return combine_crls(self.sources, self.combined)
            except (OSError, ValueError) as exc:
                raise Unavailable(f"cannot write the combined CRL {self.combined}: {exc}") from exc

    def refresh(self) -> bool:
        """Combine the CRLs and, when the result changed (or an earlier reload failed), make the broker reload it."""
        changed = self.combine() or self._reload_pending
        if changed:
            self._reload_pending = True
            self.reload_broker(combine=False)
            self._reload_pending = False
        return changed

    def revoke(self, identity: str) -> bool:
        """Revoke every certificate of ``identity`` and make the broker reload the CRL. True when ``identity``
        ever had a certificate (its live sessions must then be ended); False leaves the broker alone."""
        tenant = identity.partition(":")[0]
        try:
            newly, every = revoke_identity(self._pki_dir, identity, self._crl_file)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"cannot revoke the certificates of {identity}: {exc}") from exc
        if not every:
            return False
        if newly:
            REVOKED.labels(tenant).inc(len(newly))
            log.info("device certificates revoked", extra={"serials": newly, "crl": str(self._crl_file)})
        self.reload_broker()
        return True

    def revoke_tenant(self, tenant: str, issued_before: dt.datetime | None = None) -> list[str]:
        """Revoke every certificate of a deleted tenant's devices (only those issued before ``issued_before``
        when given) and make the broker reload the CRL; returns the identities that had certificates."""
        try:
            newly, every, identities = revoke_tenant(self._pki_dir, tenant, issued_before, self._crl_file)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"cannot revoke the certificates of tenant {tenant}: {exc}") from exc
        if not every:
            return []
        if newly:
            REVOKED.labels(tenant).inc(len(newly))
            log.info("deleted tenant's certificates revoked", extra={"tenant": tenant, "serials": newly})
        self.reload_broker()
        return identities

    def reload_broker(self, combine: bool = True) -> None:
        """SIGHUP Mosquitto: it re-reads its configuration, the CRL with it (the combined one rewritten first)."""
        if combine:
            self.combine()
        try:
            pid = int(self._pid_file.read_text().strip())
        except (OSError, ValueError) as exc:
            raise Unavailable(f"cannot read the broker's PID from {self._pid_file}: {exc}") from exc
        # A stale pid file must not make us signal an unrelated process (checked where /proc exists).
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip() if Path("/proc/self").exists() else None
        except OSError:
            name = ""
        if name is not None and name != BROKER_PROCESS_NAME:
            raise Unavailable(f"process {pid} of {self._pid_file} is not {BROKER_PROCESS_NAME} (got {name!r})")
        try:
            os.kill(pid, signal.SIGHUP)
        except OSError as exc:
            raise Unavailable(f"cannot signal the broker (pid {pid}): {exc}") from exc
        log.info("broker asked to reload its CRL", extra={"pid": pid})


def revoker_from_settings(settings: Settings) -> CertificateRevoker | None:
    """The revoker the settings ask for (None: revocation off), logging which at start."""
    if not settings.pki_dir:
        log.info("certificate revocation off (MQTT_AGENT_PKI_DIR is not set): removed devices keep their certificates")
        return None
    if not settings.broker_pid_file:
        raise SettingsError("MQTT_AGENT_BROKER_PID_FILE is required when MQTT_AGENT_PKI_DIR is set")
    pki_dir = Path(settings.pki_dir)
    crl_file = Path(settings.crl_file) if settings.crl_file else pki_dir / CRL_FILE
    log.info(
        "certificate revocation on",
        extra={"pki_dir": str(pki_dir), "crl": str(crl_file), "broker_pid_file": settings.broker_pid_file},
    )
    if not settings.dynsec_port:
        log.warning(
            "no dynamic security connection (MQTT_AGENT_DYNSEC_PORT): a revoked certificate cannot open new "
            "sessions, but its live sessions stay up until they end"
        )
    combined = Path(settings.device_crl_file) if settings.device_crl_file else None
    sources = [crl_file, *([Path(settings.x509_crl_file)] if settings.x509_crl_file else [])]
    if combined is not None:
        log.info("combined CRL", extra={"crl": str(combined), "sources": [str(p) for p in sources]})
    return CertificateRevoker(pki_dir, crl_file, Path(settings.broker_pid_file), combined, sources)


def removal_handler(
    revoker: CertificateRevoker | None, end_sessions: Callable[[str], None] | None
) -> Callable[[str], None] | None:
    """What a removed device's identity goes through: its certificates revoked and the broker reloaded first,
    then its live sessions ended and its password forgotten (``end_sessions``). The sessions are ended even
    when revocation failed (the failure is raised afterwards, so the event is retried)."""
    if revoker is None:
        return end_sessions

    def on_remove(identity: str) -> None:
        failure: Unavailable | None = None
        try:
            revoker.revoke(identity)
        except Unavailable as exc:
            failure = exc
        if end_sessions is not None:
            end_sessions(identity)
        if failure is not None:
            raise failure

    return on_remove
