"""ondasctl: brings the Ondas platform up on one machine (``make up``), reports and stops it.

It starts the infrastructure (Kafka-protocol broker, PostgreSQL, Redis, MongoDB-compatible store, Mosquitto,
gateway) and every service as supervised child processes, with all state in one data directory.
"""
