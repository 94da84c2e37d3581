"""EdgeFleet agent: the device side (enrollment, local inference, offload, OTA, telemetry)."""
