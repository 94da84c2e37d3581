"""Domain values to and from edgefleet.v1 messages."""

from __future__ import annotations

import dataclasses

from controller.services.devices import Device
from edgefleet.hardware import HardwareFacts
from edgefleet.profiles import HardwareProfile
from edgefleet.v1 import admin_pb2, common_pb2


def facts_to_proto(facts: HardwareFacts) -> common_pb2.HardwareFacts:
    return common_pb2.HardwareFacts(**dataclasses.asdict(facts))


def facts_from_proto(msg: common_pb2.HardwareFacts) -> HardwareFacts:
    return HardwareFacts(
        cpu_model=msg.cpu_model[:256],
        arch=msg.arch[:32],
        cpu_flags=tuple(f[:32] for f in msg.cpu_flags[:64]),
        cores=max(0, msg.cores),
        ram_bytes=max(0, msg.ram_bytes),
        runtimes=tuple(r[:32] for r in msg.runtimes[:16]),
        onnx_execution_providers=tuple(p[:64] for p in msg.onnx_execution_providers[:16]),
        os=msg.os[:128],
        hostname=msg.hostname[:253],
        accelerators=tuple(a[:32] for a in msg.accelerators[:16]),
    )


def device_to_proto(device: Device) -> common_pb2.Device:
    return common_pb2.Device(
        device_id=device.device_id,
        name=device.name,
        profile=device.profile,
        requested_profile=device.requested_profile,
        labels=dict(device.labels),
        state=device.state,
        online=device.online,
        last_seen_unix_ms=device.last_seen_ms,
        facts=facts_to_proto(device.facts),
        cert_fingerprint=device.cert_fingerprint,
        created_unix_ms=device.created_ms,
        enrolled_unix_ms=device.enrolled_ms,
        agent_version=device.agent_version,
    )


def profile_to_proto(profile: HardwareProfile) -> admin_pb2.HardwareProfile:
    return admin_pb2.HardwareProfile(
        name=profile.name,
        description=profile.description,
        runtimes=list(profile.runtimes),
        precisions=list(profile.precisions),
        memory_budget_bytes=profile.memory_budget_bytes,
        model_size_budget_bytes=profile.model_size_budget_bytes,
        threads=profile.threads,
        builtin=profile.builtin,
        requires_flags=[*profile.requires_flags, *profile.requires_any_flag],
        arch=profile.arch,
        requires_accelerators=list(profile.requires_accelerators),
    )
