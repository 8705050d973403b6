"""The MQTT IoT agent: device attrs from Mosquitto to ``<tenant>.device-data``, ``configure`` events back to
``<tenant>:<device-id>/config``."""
