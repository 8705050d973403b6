"""The agent core shared by every protocol agent (MQTT, HTTP, later LwM2M); each agent keeps only its protocol.

- ``ingest.py``: the one device-ingest path (tenant served, device known via the caches, disabled, attribute
  rules, the ``device-data`` record with its key and headers, sent to the producer);
- ``payload.py``: the identity ``<tenant>:<device-id>``, what a device may send (limits, attribute policy,
  timestamps) and the one header builder of every record about a device;
- ``device_events.py``: the one device-event handler (cache updates, then the agent's hooks);
- ``liveness.py``: the one liveness publisher (the trigger is each agent's);
- ``cache.py``: the per-tenant device cache, warmed from the device manager and fed from device events;
- ``credentials_redis.py``: the device credential store in Redis (written and deleted by the MQTT agent only);
- ``delivery.py``, ``certs.py``, ``stats.py``, ``admin.py``: waiting for Kafka, client certificates and the CRL,
  statistics and the operator routes (agent time comes from ``ondas.stamping``).
"""
