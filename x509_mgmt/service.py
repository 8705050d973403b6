"""The certificate authority's rules. Every method takes the tenant explicitly; storage isolation is the store's.

- A certificate from a CSR: the CSR is well formed, self-signed correctly, with an RSA key of at least 2048 bits
  or an EC key on P-256/384/521; its CN is the device id (``<id>`` or ``<tenant>:<id>`` with the caller's own
  tenant); the device exists in the caller's tenant (asked of the device manager). The certificate's CN is the
  platform's identity of the device, ``<tenant>:<device-id>``, and it belongs to that device.
- An external certificate: its chain ends at a CA the tenant registered as trusted, it is not a CA, it is valid
  for at least the configured number of days; it may name a device of the tenant.
- Revoking deletes the record; a certificate the platform issued also goes on the CRL, which is regenerated at
  once. Every issue, registration, revocation and owner change is audited with the user and the time, and
  announced on Kafka through the outbox (x509_mgmt/events.py).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client import Counter

from ondas import log as ondas_log
from ondas.errors import Invalid, NotFound, Unavailable
from ondas.service_identity import service_authorization
from ondas.settings import service_identity
from x509_mgmt import ca as camod
from x509_mgmt import events
from x509_mgmt.ca import CertificateAuthority
from x509_mgmt.models import (
    CertificateRecord,
    Condition,
    CsrRequest,
    ExternalRequest,
    PageRequest,
    TrustedCa,
    TrustedCaRequest,
    parse_device_id,
)
from x509_mgmt.store_postgres import PostgresStore, PostgresTx

log = logging.getLogger("x509_mgmt.service")

CERTIFICATES = Counter(
    "x509_mgmt_certificates_total",
    "Certificates issued, registered, revoked or re-associated",
    ["tenant", "action"],
)

#: Who the audit trail names for changes the device manager's events cause.
DEVICE_MANAGER_ACTOR = "device-manager"


class DeviceDirectory(Protocol):
    def exists(self, tenant: str, device_id: str) -> bool: ...


class DeviceManagerDirectory:
    """Asks the device manager's internal route ``GET /internal/tenants/<tenant>/devices/<id>`` with this
    process's service identity: 200 exists, 404 does not; anything else is 503 (fail closed)."""

    def __init__(self, url: str, timeout: float = 5.0, identity: tuple[str, str] | None = None) -> None:
        self._url = url.rstrip("/")
        self._timeout = timeout
        self._identity = identity if identity is not None else service_identity()

    def exists(self, tenant: str, device_id: str) -> bool:
        headers = {"Authorization": service_authorization(*self._identity)} if self._identity else {}
        url = f"{self._url}/internal/tenants/{tenant}/devices/{device_id}"
        try:
            resp = requests.get(url, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:
            log.warning("the device manager did not answer", extra={"error": type(exc).__name__})
            raise Unavailable("cannot check the device: the device manager does not answer; try again later") from exc
        if resp.status_code == 404:
            return False
        if resp.status_code == 200:
            try:
                body = resp.json()
            except ValueError:
                body = None
            return isinstance(body, dict) and str(body.get("id", "")).lower() == device_id
        log.warning("the device manager refused a device lookup", extra={"status": resp.status_code})
        raise Unavailable(f"cannot check the device: the device manager answered {resp.status_code}; try again later")


class AnyDevice:
    """X509_MGMT_CHECK_DEVICE=off (dojot's certservice.check.device.exists=false): every device id is accepted."""

    def exists(self, tenant: str, device_id: str) -> bool:
        return True


@dataclass(frozen=True)
class Policy:
    certificate_days: int = 365
    crl_valid: dt.timedelta = dt.timedelta(days=7)
    external_min_validity_days: int = 1
    ca_min_validity_days: int = 1
    trusted_ca_limit: int = -1


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class X509Service:
    def __init__(
        self,
        store: PostgresStore,
        ca: CertificateAuthority,
        devices: DeviceDirectory,
        policy: Policy | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.ca = ca
        self.devices = devices
        self.policy = policy or Policy()
        self._clock = clock
        # What the device trust files were last written from (sync_device_trust), None before the first round.
        self._trust_written: tuple[list[tuple[str, str]], list[tuple[str, str, str]]] | None = None

    def now(self) -> dt.datetime:
        return self._clock()

    # -- the platform CA -------------------------------------------------------------------------------------
    def ca_info(self) -> dict[str, str]:
        """dojot's ``GET /ca``: the CA that signs device certificates (fingerprint) and the chain to the root."""
        return {"certificateFingerprint": self.ca.issuing_fingerprint, "caPem": self.ca.chain_pem()}

    def crl_pem(self) -> str:
        state = self.store.crl_state()
        if state.pem is not None and self._fresh(state.revision, state.built_revision, state.next_update):
            return state.pem
        return self.refresh_crl()

    def _fresh(self, revision: int, built: int, next_update: dt.datetime | None) -> bool:
        if built != revision or next_update is None:
            return False
        return next_update - self.now() > self.policy.crl_valid / 2

    def refresh_crl(self, force: bool = False) -> str:
        """Regenerate the CRL when a revocation is not on it yet, or half its validity is gone (or ``force``)."""
        with self.store.crl_update() as update:
            state = update.state
            if (
                not force
                and state.pem is not None
                and self._fresh(state.revision, state.built_revision, state.next_update)
            ):
                return state.pem
            now = self.now()
            number = state.number + 1
            crl = self.ca.crl(update.revoked(), number, now, self.policy.crl_valid)
            text = crl.public_bytes(serialization.Encoding.PEM).decode()
            update.store(number, state.revision, text, now, now + self.policy.crl_valid)
        log.info("CRL generated", extra={"crl_number": number, "revoked": len(crl)})
        return text

    def sync_crl_file(self) -> None:
        """Keep ``<data dir>/crl.pem`` the current CRL (the relay's periodic upkeep)."""
        text = self.crl_pem()
        path = self.ca.paths.data(camod.CRL_FILE)
        try:
            current = path.read_text()
        except FileNotFoundError:
            current = ""
        if current != text:
            self.ca.write_crl_file(text)

    def sync_device_trust(self) -> None:
        """Keep ``<data dir>/device-trust.tsv`` and ``trusted-cas/`` what the listeners must trust beyond the
        platform CAs: every tenant's CAs and the external certificates that belong to a device (the relay's
        upkeep, so within a second of a change)."""
        cas, certs = self.store.device_trust()
        if (cas, certs) == self._trust_written:  # the files hold it (each CA parsed and hashed once per change)
            return
        changed = camod.write_device_trust(self.ca.paths.data_dir, cas, certs)
        self._trust_written = (cas, certs)
        if changed:
            log.info(
                "device trust files rewritten", extra={"trusted_cas": len(cas), "external_certificates": len(certs)}
            )

    def upkeep(self) -> None:
        """The relay's periodic round: the CRL file and the device trust files current."""
        self.sync_crl_file()
        self.sync_device_trust()

    # -- certificates ---------------------------------------------------------------------------------------
    def create(self, tenant: str, user: str, request: CsrRequest | ExternalRequest) -> dict[str, Any]:
        if isinstance(request, CsrRequest):
            cert = self.issue(tenant, user, request)
            return {"certificateFingerprint": cert.fingerprint, "certificatePem": cert.pem}
        cert = self.register_external(tenant, user, request)
        return {"certificateFingerprint": cert.fingerprint}

    def issue(self, tenant: str, user: str, request: CsrRequest) -> CertificateRecord:
        csr = camod.load_csr(request.csr)
        device_id = self._csr_device(tenant, camod.csr_common_name(csr))
        if request.device_id is not None and request.device_id != device_id:
            raise Invalid(
                f"belongsTo.device ({request.device_id}) is not the device the CSR names in its CN ({device_id})"
            )
        with ondas_log.bind(tenant=tenant, device=device_id):
            self._require_device(tenant, device_id)
            now = self.now()
            cert = self.ca.issue(csr, f"{tenant}:{device_id}", self.policy.certificate_days, now)
            record = _record(tenant, cert, user, now, True, None, {"device": device_id})
            with self.store.transaction(tenant) as tx:
                tx.insert_certificate(record)
                tx.audit(now, user, "issued", record.fingerprint, record.serial, device_id)
                tx.enqueue(*events.certificate_event(events.ISSUED, record, user, _ms(now)))
            CERTIFICATES.labels(tenant, "issued").inc()
            log.info("certificate issued", extra={"fingerprint": record.fingerprint, "serial": record.serial})
            return record

    def _csr_device(self, tenant: str, common_name: str) -> str:
        prefix, sep, rest = common_name.partition(":")
        if sep:
            if prefix != tenant:
                raise Invalid(
                    f"the CSR's CN names tenant {prefix[:64]!r}; certificates are issued for the caller's tenant "
                    f"({tenant}) only: put the device id alone in the CN"
                )
            common_name = rest
        return parse_device_id(common_name, "the CSR's CN (the device id)")

    def _require_device(self, tenant: str, device_id: str) -> None:
        if not self.devices.exists(tenant, device_id):
            raise Invalid(f"there is no device {device_id} in tenant {tenant}", device=device_id)

    def register_external(self, tenant: str, user: str, request: ExternalRequest) -> CertificateRecord:
        chain = camod.load_certificates(request.chain)
        leaf = chain[0]
        now = self.now()
        if camod.is_ca(leaf):
            raise Invalid("the first certificate of certificateChain is a CA certificate; it must be the device's")
        camod.check_public_key(_key_of(leaf))
        self._check_validity(leaf, now, self.policy.external_min_validity_days, "the certificate")
        if camod.issued_by(leaf, self.ca.issuing):
            raise Invalid("the certificate was issued by this platform's CA; it is registered already when issued")
        if request.device_id is not None:
            self._require_device(tenant, request.device_id)
        belongs_to: dict[str, Any] = {"device": request.device_id} if request.device_id is not None else {}
        with ondas_log.bind(tenant=tenant, device=request.device_id), self.store.transaction(tenant) as tx:
            anchor = self._anchor(tx, chain, request.ca_fingerprint)
            anchor_cert = x509.load_pem_x509_certificate(anchor.pem.encode())
            camod.verify_chain(chain, anchor_cert)
            record = _record(tenant, leaf, user, now, False, anchor.fingerprint, belongs_to)
            tx.insert_certificate(record)
            tx.audit(now, user, "registered", record.fingerprint, record.serial, record.device_id)
            tx.enqueue(*events.certificate_event(events.REGISTERED, record, user, _ms(now)))
        CERTIFICATES.labels(tenant, "registered").inc()
        log.info("external certificate registered", extra={"tenant": tenant, "fingerprint": record.fingerprint})
        return record

    def _anchor(self, tx: PostgresTx, chain: list[x509.Certificate], ca_fingerprint: str | None) -> TrustedCa:
        if ca_fingerprint is not None:
            anchor = tx.get_trusted_ca(ca_fingerprint)
            if anchor is None:
                raise Invalid(f"your tenant has no trusted CA with fingerprint {ca_fingerprint}")
            return anchor
        last = chain[-1]
        own = tx.get_trusted_ca(camod.fingerprint(last))
        if own is not None:
            return own
        for candidate in tx.trusted_cas():
            if camod.issued_by(last, x509.load_pem_x509_certificate(candidate.pem.encode())):
                return candidate
        raise Invalid(
            "the certificate chain does not end at a CA your tenant trusts: register the CA with POST "
            "/x509/v1/trusted-cas first, or give its caFingerprint"
        )

    def _check_validity(self, cert: x509.Certificate, now: dt.datetime, min_days: int, what: str) -> None:
        if cert.not_valid_before_utc > now:
            raise Invalid(f"{what} is not valid yet (notBefore {cert.not_valid_before_utc.isoformat()})")
        if cert.not_valid_after_utc - now < dt.timedelta(days=min_days):
            raise Invalid(
                f"{what} expires on {cert.not_valid_after_utc.isoformat()}; it must be valid for at least "
                f"{min_days} more day(s)"
            )

    def get_certificate(self, tenant: str, fingerprint: str) -> CertificateRecord:
        with self.store.transaction(tenant) as tx:
            cert = tx.get_certificate(fingerprint)
        if cert is None:
            raise _no_certificate(fingerprint)
        return cert

    def list_certificates(
        self, tenant: str, conditions: list[Condition], page: PageRequest
    ) -> tuple[list[CertificateRecord], int]:
        with self.store.transaction(tenant) as tx:
            return tx.list_certificates(conditions, page)

    def revoke(self, tenant: str, user: str, fingerprint: str) -> CertificateRecord:
        """dojot's DELETE: the record goes; a certificate the platform issued goes on the CRL too."""
        now = self.now()
        with self.store.transaction(tenant) as tx:
            cert = tx.get_certificate(fingerprint, lock=True)
            if cert is None:
                raise _no_certificate(fingerprint)
            self._remove(tx, cert, user, now, "revoked")
        with ondas_log.bind(tenant=tenant, device=cert.device_id):
            log.info("certificate revoked", extra={"fingerprint": fingerprint, "serial": cert.serial})
        if cert.issued_by_platform:
            self.refresh_crl()
        return cert

    def _remove(self, tx: PostgresTx, cert: CertificateRecord, user: str, now: dt.datetime, action: str) -> None:
        tx.delete_certificate(cert.fingerprint)
        if cert.issued_by_platform:
            tx.record_revocation(cert, now, user)
        tx.audit(now, user, action, cert.fingerprint, cert.serial, cert.device_id)
        tx.enqueue(*events.certificate_event(events.REVOKED, cert, user, _ms(now)))
        CERTIFICATES.labels(tx.tenant, "revoked").inc()

    def change_owner(self, tenant: str, user: str, fingerprint: str, belongs_to: dict[str, Any]) -> CertificateRecord:
        """PATCH ``belongsTo``: ``{"device": id}`` associates, ``{"device": null}`` dissociates; ``{}`` (the DELETE
        of ``.../belongsto``) removes the association."""
        device = belongs_to.get("device")
        if isinstance(device, str):
            current = self.get_certificate(tenant, fingerprint)
            if current.issued_by_platform and current.device_id not in (None, device):
                raise Invalid(
                    f"this certificate was issued by the platform to {tenant}:{current.device_id} (its CN); it "
                    f"cannot belong to another device: request a certificate for {device} instead"
                )
            self._require_device(tenant, device)
        now = self.now()
        with self.store.transaction(tenant) as tx:
            cert = tx.get_certificate(fingerprint, lock=True)
            if cert is None:
                raise _no_certificate(fingerprint)
            if isinstance(device, str) and cert.issued_by_platform and cert.device_id not in (None, device):
                raise Invalid("this certificate was issued by the platform to another device (its CN)")
            tx.set_belongs_to(fingerprint, belongs_to, now)
            updated = CertificateRecord(**{**cert.__dict__, "belongs_to": dict(belongs_to), "modified_at": now})
            tx.audit(now, user, "owner-changed", fingerprint, cert.serial, cert.device_id, {"belongsTo": belongs_to})
            tx.enqueue(*events.certificate_event(events.OWNER_CHANGED, updated, user, _ms(now), cert.belongs_to))
        with ondas_log.bind(tenant=tenant, device=device or cert.device_id):
            CERTIFICATES.labels(tenant, "owner-changed").inc()
            log.info("certificate owner changed", extra={"fingerprint": fingerprint, "belongs_to": belongs_to})
        return updated

    def device_removed(self, tenant: str, device_id: str, actor: str = DEVICE_MANAGER_ACTOR) -> dict[str, int]:
        """The device manager removed a device: revoke every certificate the platform issued to it (they name it
        in their CN) and dissociate the external certificates that belonged to it (a factory certificate stays
        registered and may be given to another device). Idempotent: a repeated event finds nothing left."""
        now = self.now()
        revoked = dissociated = 0
        with ondas_log.bind(tenant=tenant, device=device_id), self.store.transaction(tenant) as tx:
            for cert in tx.certificates_of_device(device_id):
                if cert.issued_by_platform:
                    self._remove(tx, cert, actor, now, "revoked-device-removed")
                    revoked += 1
                else:
                    tx.set_belongs_to(cert.fingerprint, {}, now)
                    updated = CertificateRecord(**{**cert.__dict__, "belongs_to": {}, "modified_at": now})
                    tx.audit(now, actor, "owner-changed", cert.fingerprint, cert.serial, device_id, {"belongsTo": {}})
                    tx.enqueue(
                        *events.certificate_event(events.OWNER_CHANGED, updated, actor, _ms(now), cert.belongs_to)
                    )
                    dissociated += 1
        if revoked:
            self.refresh_crl()
        if revoked or dissociated:
            with ondas_log.bind(tenant=tenant, device=device_id):
                log.info("certificates of a removed device", extra={"revoked": revoked, "dissociated": dissociated})
        return {"revoked": revoked, "dissociated": dissociated}

    def audit_trail(self, tenant: str, fingerprint: str) -> list[dict[str, Any]]:
        with self.store.transaction(tenant) as tx:
            return tx.audit_trail(fingerprint)

    # -- trusted CAs --------------------------------------------------------------------------------------------
    def register_trusted_ca(self, tenant: str, user: str, request: TrustedCaRequest) -> TrustedCa:
        certs = camod.load_certificates(request.pem, "caPem")
        if len(certs) != 1:
            raise Invalid(f"caPem must hold exactly one certificate, it holds {len(certs)}")
        cert = certs[0]
        if not camod.is_ca(cert):
            raise Invalid("caPem is not a CA certificate (its basicConstraints do not say CA:TRUE)")
        if not camod.issued_by(cert, cert):
            raise Invalid("caPem is not a root CA certificate: it is not self-signed")
        now = self.now()
        self._check_validity(cert, now, self.policy.ca_min_validity_days, "the CA certificate")
        if self.ca.is_platform_ca(cert):
            raise Invalid("the platform's own CA cannot be registered as a trusted CA")
        ca = TrustedCa(
            tenant=tenant,
            fingerprint=camod.fingerprint(cert),
            pem=camod.pem(cert),
            subject_dn=camod.subject_dn(camod.subject_of(cert)),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            allow_auto_registration=request.allow_auto_registration,
            created_at=now,
            modified_at=now,
            created_by=user,
        )
        with self.store.transaction(tenant) as tx:
            tx.insert_trusted_ca(ca, self.policy.trusted_ca_limit)
            tx.audit(now, user, "trusted-ca-registered", ca.fingerprint, detail={"subjectDN": ca.subject_dn})
        log.info("trusted CA registered", extra={"tenant": tenant, "ca_fingerprint": ca.fingerprint})
        return ca

    def get_trusted_ca(self, tenant: str, fingerprint: str) -> TrustedCa:
        with self.store.transaction(tenant) as tx:
            ca = tx.get_trusted_ca(fingerprint)
        if ca is None:
            raise _no_ca(fingerprint)
        return ca

    def list_trusted_cas(
        self, tenant: str, conditions: list[Condition], page: PageRequest
    ) -> tuple[list[TrustedCa], int]:
        with self.store.transaction(tenant) as tx:
            return tx.list_trusted_cas(conditions, page)

    def set_auto_registration(self, tenant: str, user: str, fingerprint: str, allow: bool) -> None:
        now = self.now()
        with self.store.transaction(tenant) as tx:
            if tx.get_trusted_ca(fingerprint, lock=True) is None:
                raise _no_ca(fingerprint)
            tx.set_auto_registration(fingerprint, allow, now)
            tx.audit(now, user, "trusted-ca-updated", fingerprint, detail={"allowAutoRegistration": allow})

    def delete_trusted_ca(self, tenant: str, user: str, fingerprint: str) -> list[CertificateRecord]:
        """Remove a trusted CA and every certificate registered under it (each announced as revoked: the
        platform no longer trusts them). Returns the certificates removed."""
        now = self.now()
        with self.store.transaction(tenant) as tx:
            if tx.get_trusted_ca(fingerprint, lock=True) is None:
                raise _no_ca(fingerprint)
            dependents = tx.certificates_of_ca(fingerprint)
            for cert in dependents:
                self._remove(tx, cert, user, now, "removed-with-ca")
            tx.delete_trusted_ca(fingerprint)
            tx.audit(now, user, "trusted-ca-deleted", fingerprint, detail={"certificates": len(dependents)})
        log.info(
            "trusted CA deleted",
            extra={"tenant": tenant, "ca_fingerprint": fingerprint, "certificates_removed": len(dependents)},
        )
        return dependents


def _key_of(cert: x509.Certificate) -> object:
    try:
        return cert.public_key()
    except ValueError as exc:
        raise Invalid(f"the certificate's public key cannot be read ({exc})") from exc


def _record(
    tenant: str,
    cert: x509.Certificate,
    user: str,
    now: dt.datetime,
    by_platform: bool,
    ca_fingerprint: str | None,
    belongs_to: dict[str, Any],
) -> CertificateRecord:
    return CertificateRecord(
        tenant=tenant,
        fingerprint=camod.fingerprint(cert),
        pem=camod.pem(cert),
        serial=camod.serial_hex(cert),
        subject_dn=camod.subject_dn(camod.subject_of(cert)),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        issued_by_platform=by_platform,
        auto_registered=False,
        ca_fingerprint=ca_fingerprint,
        belongs_to=belongs_to,
        created_at=now,
        modified_at=now,
        created_by=user,
    )


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _no_certificate(fingerprint: str) -> NotFound:
    return NotFound(f"No certificate with fingerprint {fingerprint}")


def _no_ca(fingerprint: str) -> NotFound:
    return NotFound(f"No trusted CA certificate with fingerprint {fingerprint}")
