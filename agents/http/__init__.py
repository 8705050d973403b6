"""The HTTP device agent: devices post their data to ``/http-agent/v1/incoming-messages``, authenticated by their
own credentials, and it becomes ``device-data`` on Kafka, exactly as the MQTT agent makes it."""
