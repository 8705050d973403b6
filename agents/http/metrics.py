"""Prometheus metrics of the HTTP agent. The tenant label only ever holds a tenant the agent serves (else
``_unknown``): any client can write any tenant into its username, and labels must stay bounded.

A message is one request of ``incoming-messages`` or one item of ``create-many``; a request refused as a whole
(credentials, size, not JSON, ...) counts as one message."""

from __future__ import annotations

from prometheus_client import Counter

UNKNOWN_TENANT = "_unknown"

RECEIVED = Counter("http_agent_messages_received_total", "Device messages received", ["tenant"])
PUBLISHED = Counter("http_agent_messages_published_total", "Device messages Kafka accepted", ["tenant"])
DROPPED = Counter(
    "http_agent_messages_dropped_total",
    "Device messages refused, by reason (the error of the answer)",
    ["tenant", "reason"],
)
UNKNOWN_ATTRS = Counter(
    "http_agent_attrs_unknown_total", "Keys forwarded that are none of the device's attributes", ["tenant"]
)
LIVENESS = Counter(
    "http_agent_liveness_events_total", "Online/offline events Kafka accepted", ["tenant", "event", "reason"]
)
