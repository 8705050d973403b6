"""History: the REST API over the device data the persister stored (dojot's history service).

Run it with ``python -m history``. The contract is docs/api/history.yaml.

``GET /device/<device_id>/history`` (the gateway maps ``/history/device/...`` here by stripping
``/history``) with ``attr`` (one, comma-separated or repeated), ``lastN`` (newest first), ``firstN``
(oldest first), ``hLimit`` (at most this many per attribute, newest first unless ``firstN``), ``dateFrom`` and
``dateTo`` (ISO 8601, inclusive). One ``attr`` gives a JSON list; several or none give an object keyed by
attribute. Each entry is ``{"device_id", "ts", ["metadata",] "value", "attr"}`` with ``ts`` rendered like
dojot (``2018-03-22T13:47:07.050000Z``).

No data, as dojot v0.8.1 does it (the choice is tested and documented in the OpenAPI file):
- a device with no stored data at all: 404 ``{"title": "Device not found", ...}``;
- one requested attribute that never had data: 404 ``{"title": "Attr not found", ...}``;
- an attribute with data but none in the requested window: 200 ``[]``;
- several attributes: 200 with an empty list for each attribute without data.

The tenant comes from the caller's token and selects the tenant's database (the persister's layout), so a
tenant never reads another tenant's data.
"""
