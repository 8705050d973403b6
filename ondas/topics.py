"""The whole Kafka topic grammar of the platform, built and parsed here and nowhere else.

Topics are ``<tenant>.<subject>``. The tenancy topic is ``dojot-management.dojot.tenancy``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ondas.tenant import MANAGEMENT_TOPIC_PREFIX, validate_tenant

DEVICE_DATA = "device-data"
DEVICE_EVENTS = "dojot.device-manager.device"
DEVICE_LIVENESS = "device-liveness"
CERTIFICATES = "dojot.x509-identity-mgmt.certificates"  # x509_mgmt's certificate events
NOTIFICATIONS = "dojot.notifications"  # dojot's notifications (flows' notification node); history stores them
TENANCY = "dojot.tenancy"
DEAD_LETTER_SUFFIX = ".dlq"

TENANCY_TOPIC = f"{MANAGEMENT_TOPIC_PREFIX}.{TENANCY}"


@dataclass(frozen=True)
class Topic:
    tenant: str
    subject: str

    def __str__(self) -> str:
        return f"{self.tenant}.{self.subject}"


def topic(tenant: str, subject: str) -> str:
    """Build the topic name of ``subject`` for ``tenant``."""
    if not subject or subject.startswith("."):
        raise ValueError(f"bad subject {subject!r}")
    return f"{validate_tenant(tenant)}.{subject}"


def device_data(tenant: str) -> str:
    return topic(tenant, DEVICE_DATA)


def device_events(tenant: str) -> str:
    return topic(tenant, DEVICE_EVENTS)


def notifications(tenant: str) -> str:
    return topic(tenant, NOTIFICATIONS)


def device_liveness(tenant: str) -> str:
    return topic(tenant, DEVICE_LIVENESS)


def dead_letter(name: str) -> str:
    """Dead-letter topic of a topic: the same name with ``.dlq`` appended."""
    return name + DEAD_LETTER_SUFFIX


def parse(name: str) -> Topic:
    """Split a topic name into tenant and subject; raises ValueError for a name not in the grammar."""
    if name == TENANCY_TOPIC:
        return Topic(MANAGEMENT_TOPIC_PREFIX, TENANCY)
    tenant, sep, subject = name.partition(".")
    if not sep or not subject:
        raise ValueError(f"topic {name!r} is not <tenant>.<subject>")
    try:
        validate_tenant(tenant)
    except Exception as exc:
        raise ValueError(f"topic {name!r} has an invalid tenant") from exc
    return Topic(tenant, subject)


def tenant_topics(tenant: str, subjects: list[str]) -> list[str]:
    return [topic(tenant, s) for s in subjects]
