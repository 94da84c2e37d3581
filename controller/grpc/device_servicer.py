"""DeviceService: enrollment and heartbeats (thin: decode, call the registry, encode)."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc

from controller.grpc.auth import current_device
from controller.grpc.convert import facts_from_proto
from controller.services.devices import DeviceRegistry
from edgefleet import topics
from edgefleet.v1 import device_pb2, device_pb2_grpc


class DeviceServicer(device_pb2_grpc.DeviceServiceServicer):
    def __init__(
        self,
        registry: DeviceRegistry,
        mqtt_url: str,
        device_endpoint: Callable[[], str],
        trusted_root: Callable[[], bytes] | None = None,
    ) -> None:
        """``trusted_root``: the current signed TUF ``root.json`` (``Releases.trusted_root``),
        which the device pins at enrollment (without it, the device accepts no update)."""
        self._registry = registry
        self._mqtt_url = mqtt_url
        self._device_endpoint = device_endpoint
        self._trusted_root = trusted_root

    def Enroll(
        self, request: device_pb2.EnrollRequest, context: grpc.ServicerContext
    ) -> device_pb2.EnrollResponse:
        enrollment = self._registry.enroll(
            request.token, request.csr_pem, facts_from_proto(request.facts), request.agent_version
        )
        device = enrollment.device
        return device_pb2.EnrollResponse(
            device_id=device.device_id,
            certificate_pem=enrollment.certificate_pem,
            ca_certificate_pem=enrollment.ca_certificate_pem,
            profile=device.profile,
            mqtt=device_pb2.MqttCredentials(
                url=self._mqtt_url,
                username=device.device_id,
                password=enrollment.mqtt_password,
                topic_prefix=topics.device_prefix(device.device_id),
            ),
            device_endpoint=self._device_endpoint(),
            tuf_root_json=self._trusted_root() if self._trusted_root is not None else b"",
        )

    def Heartbeat(
        self, request: device_pb2.HeartbeatRequest, context: grpc.ServicerContext
    ) -> device_pb2.HeartbeatResponse:
        device = current_device()
        self._registry.record_presence(
            device.device_id, online=True, agent_version=request.agent_version
        )
        return device_pb2.HeartbeatResponse(
            server_unix_ms=int(time.time() * 1000),
            device_id=device.device_id,
            profile=device.profile,
        )
