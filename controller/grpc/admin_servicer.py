"""DeviceAdminService: the operator's view of devices (thin: decode, call, encode)."""

from __future__ import annotations

import grpc

from controller.grpc.convert import device_to_proto, profile_to_proto
from controller.services.devices import DeviceRegistry
from edgefleet.profiles import ProfileCatalogue
from edgefleet.v1 import admin_pb2, admin_pb2_grpc


class DeviceAdminServicer(admin_pb2_grpc.DeviceAdminServiceServicer):
    def __init__(self, registry: DeviceRegistry, profiles: ProfileCatalogue) -> None:
        self._registry = registry
        self._profiles = profiles

    def RegisterDevice(
        self, request: admin_pb2.RegisterDeviceRequest, context: grpc.ServicerContext
    ) -> admin_pb2.RegisterDeviceResponse:
        registration = self._registry.register(
            request.name, request.profile or "auto", dict(request.labels), request.token_ttl_seconds
        )
        return admin_pb2.RegisterDeviceResponse(
            device=device_to_proto(registration.device),
            enrollment_token=registration.token,
            token_expires_unix_ms=registration.expires_ms,
        )

    def ListDevices(
        self, request: admin_pb2.ListDevicesRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListDevicesResponse:
        devices = self._registry.list_devices(dict(request.label_selector))
        return admin_pb2.ListDevicesResponse(devices=[device_to_proto(d) for d in devices])

    def GetDevice(
        self, request: admin_pb2.GetDeviceRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetDeviceResponse:
        return admin_pb2.GetDeviceResponse(
            device=device_to_proto(self._registry.get(request.name_or_id))
        )

    def RevokeDevice(
        self, request: admin_pb2.RevokeDeviceRequest, context: grpc.ServicerContext
    ) -> admin_pb2.RevokeDeviceResponse:
        return admin_pb2.RevokeDeviceResponse(
            device=device_to_proto(self._registry.revoke(request.name_or_id))
        )

    def LabelDevice(
        self, request: admin_pb2.LabelDeviceRequest, context: grpc.ServicerContext
    ) -> admin_pb2.LabelDeviceResponse:
        device = self._registry.label(request.name_or_id, dict(request.set), list(request.remove))
        return admin_pb2.LabelDeviceResponse(device=device_to_proto(device))

    def ListProfiles(
        self, request: admin_pb2.ListProfilesRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListProfilesResponse:
        return admin_pb2.ListProfilesResponse(
            profiles=[profile_to_proto(p) for p in self._profiles]
        )
