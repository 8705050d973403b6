"""Prometheus metrics of the MQTT agent. The tenant label only ever holds a known tenant (else ``_unknown``):
any client can pick the tenant part of its username, and labels must stay bounded."""

from __future__ import annotations

from prometheus_client import Counter

UNKNOWN_TENANT = "_unknown"

RECEIVED = Counter("mqtt_agent_messages_received_total", "Device messages received from the broker", ["tenant"])
PUBLISHED = Counter("mqtt_agent_messages_published_total", "Device messages Kafka accepted", ["tenant"])
OTHER_SHARD = Counter(
    "mqtt_agent_messages_other_shard_total", "Device messages acknowledged unread: another shard's devices"
)
DROPPED = Counter("mqtt_agent_messages_dropped_total", "Device messages not forwarded", ["tenant", "reason"])
UNKNOWN_ATTRS = Counter(
    "mqtt_agent_attrs_unknown_total", "Keys forwarded that are none of the device's attributes", ["tenant"]
)
CONFIG_SENT = Counter("mqtt_agent_config_sent_total", "Configure messages the broker accepted", ["tenant"])
LIVENESS = Counter(
    "mqtt_agent_liveness_events_total",
    "Device connections seen: online/offline events published (event, reason), or ignored (unknown devices)",
    ["tenant", "event", "reason"],
)
