"""Device-side MQTT: the agent's broker connection (status, heartbeat, desired state)."""
