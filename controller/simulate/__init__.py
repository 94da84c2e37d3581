"""A fleet simulator: many simulated devices on the real protocols from a few processes.

Each device enrolls over TLS gRPC with its own key and token, then calls the mutual-TLS device
port with its own certificate, and holds its own MQTT connection with its own credentials
(heartbeats, telemetry reports at a chosen rate, desired state pushed to it). It answers a
desired state as the agent's OTA does on the wire — ReportUpdateStatus downloading, the
artifact streamed from UpdateService and checked against the desired state's length and
sha256, installed, committed — without running a model (``edgefleet simulate``).
"""
