"""flowbroker: dojot's flow engine. The REST API stores a tenant's flows (dojot's Node-RED JSON) in PostgreSQL; the
workers run every enabled flow on the tenant's device data and device events (Kafka)."""
