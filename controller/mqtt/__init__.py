"""Controller-side MQTT: broker credentials and ACLs, an embedded broker, telemetry ingest."""
