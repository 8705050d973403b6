"""The HTTP agent's rules: who is posting, whether it may, and publishing what it posted.

Order of checks (each refusal is a :class:`~agents.core.payload.Drop`, see messages.STATUS):

1. who: on the TLS listener a verified client certificate names the device (CN ``<tenant>:<device-id>``; a
   CN of another shape or a revoked certificate -> 401; the Authorization header is then not read); otherwise
   credentials (``Authorization: Basic``): missing or malformed -> 401, wrong password, unknown device or a
   device of another tenant -> 401 (the answer never says which, so nothing can be probed without a password);
2. the tenant is served (403 ``tenant_disabled``), asked only once the password was right;
3. the device exists in the device cache, or the device manager knows it (404 ``unknown_device``), and is not
   disabled (403 ``device_disabled``);
4. the body (400/413/422, see messages.py), then the attribute policy of the agent core.

Steps 2-3 and the record a message becomes (timestamps, headers, key) are the agents' one ingest path
(agents/core/ingest.py); this module adds who is posting (step 1), liveness and waiting for Kafka. The
credential store is only read here: the MQTT agent, which writes it, also deletes from it.

Per-device order: a message is prepared and handed to the (idempotent) producer while holding its device's
lock, so messages of one device reach Kafka in the order they were accepted; the request then waits, without
the lock, until Kafka accepted them, and is answered only after that.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from agents.core.cache import Device, DeviceCache
from agents.core.certs import DeviceTrust, PeerCertificate, RevocationList, certificate_identity
from agents.core.credentials_redis import CredentialReader
from agents.core.ingest import Admitted, DeviceIngest
from agents.core.payload import DeviceRef, Drop
from agents.http.liveness import Liveness
from agents.http.messages import Message, message_attrs, parse_credentials
from agents.http.metrics import PUBLISHED, UNKNOWN_ATTRS, UNKNOWN_TENANT
from ondas.errors import Unavailable
from ondas.kafka import Producer
from ondas.log import bind
from ondas.timestamps import now_ms

log = logging.getLogger("agents.http.service")

_STRIPES = 256


# An authenticated device of a served tenant.
Caller = Admitted


@dataclass
class Outcome:
    """What became of one message: published (``drop`` None) or refused."""

    drop: Drop | None = None


class Ingest:
    def __init__(
        self,
        *,
        cache: DeviceCache,
        credentials: CredentialReader,
        producer: Producer,
        liveness: Liveness | None,
        lookup: Callable[[str, str], Device | None] | None,
        warming: Callable[[], bool],
        publish_timeout_s: float,
        clock: Callable[[], int] = now_ms,
        absent_ttl: float = 2.0,
        revocations: RevocationList | None = None,
        trust: DeviceTrust | None = None,
    ) -> None:
        """``revocations``: the CA's CRL, on the TLS listener only (where certificates are taken)."""
        self._credentials = credentials
        self._liveness = liveness
        self._timeout = publish_timeout_s
        self._locks = [threading.Lock() for _ in range(_STRIPES)]
        self._revocations = revocations
        self._trust = trust
        self._ingest = DeviceIngest(
            cache=cache,
            producer=producer,
            unknown_attrs=UNKNOWN_ATTRS,
            unserved_reason="tenant_disabled",
            lookup=lookup,
            absent_ttl=absent_ttl,
            warming=warming,
            clock=clock,
        )

    def tenant_label(self, tenant: str | None) -> str:
        return tenant if tenant and self._ingest.served(tenant) else UNKNOWN_TENANT

    # -- who -----------------------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None, certificate: PeerCertificate | None = None) -> Caller:
        """``certificate``: the verified client certificate of the TLS connection, if any."""
        if certificate:
            ref = self._certified(certificate)
        else:
            ref, password = parse_credentials(authorization)
            if not self._credentials.verify(ref.tenant, ref.device_id, password):
                raise Drop("bad_credentials", "wrong username or password")
        return self._ingest.judge(ref)

    def _certified(self, certificate: PeerCertificate) -> DeviceRef:
        """A platform CA's certificate acts for its CN unless a CRL names it; with ``trust`` (x509_mgmt's trust
        file), a tenant CA's certificate acts for the device that tenant registered it to."""
        if self._revocations is None:
            raise Drop("bad_certificate", "client certificates are taken on the agent's TLS listener only")
        serial: int | None
        if self._trust is not None:
            ref, serial = self._trust.identity(certificate.der)
        else:
            ref, serial = certificate_identity(certificate.info)
        if serial is not None and self._revocations.is_revoked(serial):
            raise Drop("revoked_certificate", f"certificate {serial:x} was revoked")
        return ref

    def seen(self, caller: Caller) -> Future[Any] | None:
        """Liveness: the delivery of an ``online`` event when this request brought the device online."""
        if self._liveness is None:
            return None
        try:
            return self._liveness.seen(caller.ref.tenant, caller.ref.device_id)
        except Unavailable as exc:  # liveness is best effort: the device's data still goes through
            with bind(tenant=caller.ref.tenant, device=caller.ref.device_id):
                log.warning("last-seen time not recorded", extra={"error": exc.message})
            return None

    def online_failed(self, caller: Caller) -> None:
        if self._liveness is not None:
            self._liveness.online_failed(caller.ref.tenant, caller.ref.device_id)

    # -- what ----------------------------------------------------------------------------------------------
    def publish(self, caller: Caller, items: list[Message | Drop]) -> list[Outcome]:
        """Publish the valid messages in order and wait until Kafka accepted them (raises Unavailable when it
        did not in time); one outcome per item, refusals included."""
        ref = caller.ref
        outcomes: list[Outcome] = []
        deliveries: list[Future[Any]] = []
        with self._lock(ref):
            for item in items:
                if isinstance(item, Drop):
                    outcomes.append(Outcome(item))
                    continue
                try:
                    record = self._ingest.record(caller, message_attrs(item))
                except Drop as drop:
                    outcomes.append(Outcome(drop))
                    continue
                deliveries.append(self._ingest.send(record))
                outcomes.append(Outcome())
        self._wait(ref, deliveries)
        PUBLISHED.labels(ref.tenant).inc(len(deliveries))
        return outcomes

    def _lock(self, ref: DeviceRef) -> threading.Lock:
        return self._locks[zlib.crc32(ref.username.encode()) % _STRIPES]

    def _wait(self, ref: DeviceRef, deliveries: list[Future[Any]]) -> None:
        deadline = time.monotonic() + self._timeout
        for delivery in deliveries:
            try:
                delivery.result(max(0.0, deadline - time.monotonic()))
            except FutureTimeout as exc:
                raise Unavailable(
                    "Kafka did not accept the message in time; retry", tenant=ref.tenant, device=ref.device_id
                ) from exc
            except Unavailable:
                raise
            except Exception as exc:  # a produce error other than the producer's own
                raise Unavailable(f"Kafka did not accept the message: {exc}; retry") from exc
