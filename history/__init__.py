"""History: the REST API over the device data the persister stored (dojot's history service).

Run it with ``python -m history``. The contract is docs/api/history.yaml.

``GET /device/<device_id>/history`` (the gateway maps ``/history/device/...`` here by stripping
``/history``) with ``attr`` (one, comma-separated or repeated), ``lastN`` (newest first), ``firstN``
(oldest first), ``hLimit`` (at most this many per attribute, newest first unless ``firstN``), ``dateFrom`` and
``dateTo`` (ISO 8601 or epoch milliseconds, inclusive). One ``attr`` gives a JSON list; several or none give an
object keyed by attribute. Each entry is ``{"device_id", "ts", ["metadata",] "value", "attr"}`` with ``ts``
rendered like dojot (``2018-03-22T13:47:07.050000Z``).

``kind=reading|command`` (default ``all``) keeps only what devices reported or only what was sent to them
(``configure`` events, stored by the persister as points of the actuator attributes). ``shape=consistent``
marks every entry with ``"kind"``; dojot's shape is unchanged (commands carry ``metadata.event = "configure"``).

Unknown device against empty (the rule of dojot issue #1340, in both shapes, JSON and CSV): 404
``{"title": "Device not found", ...}`` only for a device that does not exist in the tenant; an existing device
without data, an attribute without data and an empty window are empty results in the usual shape (one
attribute ``[]``, several ``{"a": [], ...}``, none ``{}``; CSV an empty body). A device exists when the persister
recorded it from the device manager's events (collection ``devices``) or it has data. ``/latest`` follows the
same rule (``{}`` for an existing device without readings).

Paging: each attribute holds at most ``HISTORY_MAX_RESULTS`` (10,000) entries. When that cap cut the answer,
the response carries ``X-Ondas-Truncated: true`` and, when the rest can be fetched exactly, ``Link: <?...>;
rel="next"``: the same query with ``dateTo`` (newest first) or ``dateFrom`` (oldest first) moved to where this
page stopped, in epoch ms. Every attribute stops at the same instant and an instant is never split between
pages, so following the links returns every entry once. See docs/api/history.yaml.

The tenant comes from the caller's token and selects the tenant's database (the persister's layout), so a
tenant never reads another tenant's data.
"""
