"""The agent core shared by every protocol agent (MQTT, HTTP, later LwM2M): the per-tenant device cache,
the device-data rules (attribute policy, timestamps, limits on what a device may send) and the identity
``<tenant>:<device-id>``."""
