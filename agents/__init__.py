"""IoT agents: protocol adapters between devices and the platform."""
