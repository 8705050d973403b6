"""Persister: stores every ``<tenant>.device-data`` message in MongoDB so that history can serve it.

Run it with ``python -m persister``.

Device events (``<tenant>.dojot.device-manager.device``): ``create`` and ``update`` record the device as known
(collection ``devices``); ``configure`` is stored as actuation history (points of kind ``command``); ``remove``
forgets the device and, when ``PERSISTER_ON_DEVICE_REMOVE=drop`` (default ``keep``), deletes its points too; a
tenant's DELETE drops its database once auth confirms the tenant is gone.

Notifications (``<tenant>.dojot.notifications``, :class:`ondas.contracts.Notification`): kept in collection
``notifications`` (``_id`` = ``msgID``) for history's ``/notifications/history``, unless their
``metaAttrsFilter.shouldPersist`` is false.

Flow: the tenants come from auth (``GET /admin/tenants``) and then from ``dojot-management.dojot.tenancy``
(:class:`ondas.tenancy.TenancyTracker`); one :class:`ondas.kafka.ConsumerLoop` (group ``persister``) follows
``<tenant>.device-data``, ``<tenant>.dojot.device-manager.device`` and ``<tenant>.dojot.notifications`` of every
tenant and re-subscribes when a tenant appears or goes, without a restart.

Delivery: at least once from Kafka, exactly once in the store. Each batch is validated first; malformed
messages (not JSON, not the device-data contract, or ``metadata.tenant`` differing from the topic's tenant)
are copied to ``<topic>.dlq`` with the reason in headers, the good ones are written, and only then does the
loop commit the offsets. Every point has a deterministic ``_id``, so a redelivered or re-produced identical
message writes nothing new (duplicate-key errors count as success).

Storage layout (the contract history reads; see :func:`ondas.tenant.tenant_database_name`):

- one database per tenant: ``<prefix><tenant>`` with prefix ``ondas_history_`` (a tenant name too long for
  MongoDB's 63-character limit is shortened and suffixed with a hash of the full name);
- collection ``points``: one document per (message, attribute)::

      {_id: blake2b-128 hex of [device_id, attr, ts_ms, value] (an actuation appends "configure"),
       device_id: str, attr: str, value: <any JSON>,
       ts: BSON datetime (ms precision) from metadata.timestamp,
       metadata: {extra metadata fields of the message, e.g. protocol, payload},
       kind: "reading" (the device reported it) | "command" (a configure event sent it)}

  with the index ``(device_id 1, attr 1, ts -1)``. Points stored before ``kind`` existed lack it: a reader takes
  such a point as a command when ``metadata.event`` is ``"configure"`` (what actuations carried), else as a
  reading;
- collection ``latest``: the newest reading per (device_id, attr), ``_id`` = JSON ``[device_id, attr]``, same
  fields as a point; a write replaces it only if its ``ts`` is newer. Index ``(device_id 1)``. Actuations
  (``configure`` events) are stored as points with ``metadata.event = "configure"`` but never become the latest
  value: they are what was asked of the device, not what it reported;
- collection ``actuated``: ``{_id: [device_id, attr], device_id, attr}`` for every attribute with actuation
  history, so history lists those attributes too. Index ``(device_id 1)``;
- collection ``devices``: ``{_id: device_id, device_id, label, recorded: BSON datetime}``, one per device the
  device manager created or updated (its ``create``/``update`` events); ``remove`` deletes it, whatever
  ``PERSISTER_ON_DEVICE_REMOVE`` says. The persister is its only writer. History takes a device as existing when
  it is recorded here or has data (``latest`` or ``actuated``): devices created before the persister recorded
  devices are known once they have data, and a removed device whose data is kept stays readable;
- collection ``notifications``: ``{_id: msgID, ts, message, metaAttrsFilter, subject}``, index ``(ts -1)``;
- with ``PERSISTER_DATA_TTL_SECONDS`` > 0, a TTL index ``ts_ttl`` on ``points.ts`` lets the store expire points
  older than that (by their device timestamp); the latest values stay.
"""
