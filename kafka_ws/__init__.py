"""kafka_ws: real-time device data over websockets (dojot's Kafka WS) and socket.io (dojot's data broker)."""
