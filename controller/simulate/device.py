"""One simulated device: enrollment, its identity, and the payloads it sends.

Enrollment trusts the controller CA the operator already holds (the agent instead finds the CA
by the token's pin: the same TLS, one step fewer). Telemetry reports carry realistic
histograms (a 20 fps camera's interval, seeded per device) for whatever variant the device runs.
"""

from __future__ import annotations

import bisect
import dataclasses
import random
import time
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controller.simulate.errors import SimulationError
from edgefleet import __version__
from edgefleet.enrollment import EnrollmentToken
from edgefleet.hardware import HardwareFacts
from edgefleet.telemetry_fields import COUNTERS, HISTOGRAMS
from edgefleet.v1 import common_pb2, device_pb2, device_pb2_grpc, report_pb2, telemetry_pb2

AGENT_VERSION = f"{__version__}+simulated"
SIMULATED_FACTS = HardwareFacts(
    cpu_model="simulated", arch="x86_64", cpu_flags=("avx2",), cores=2, ram_bytes=2 << 30,
    runtimes=("onnxruntime",), onnx_execution_providers=("CPUExecutionProvider",),
    os="Linux", hostname="simulated",
)  # fmt: skip
ENROLL_PATIENCE_S = 300.0
OFFLOADED_SHARE = 0.1  # of each report's frames
AGREED_SHARE = 0.9  # of the offloaded frames, edge and cloud answers agree
CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 0),
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
]


@dataclass(frozen=True)
class SimIdentity:
    device_id: str
    endpoint: str  # HOST:PORT of the mutual-TLS device port
    mqtt_url: str
    mqtt_username: str
    mqtt_password: str
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes

    def __repr__(self) -> str:  # never the key or the password
        return f"SimIdentity({self.device_id!r})"

    def channel(self) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca_pem, private_key=self.key_pem, certificate_chain=self.cert_pem
        )
        return grpc.secure_channel(self.endpoint, credentials, CHANNEL_OPTIONS)


def _key_and_csr() -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edgefleet-device")]))
        .sign(key, hashes.SHA256())
    )
    return pem, csr.public_bytes(serialization.Encoding.PEM).decode()


def enroll(
    channel: grpc.Channel, ca_pem: bytes, token_text: str, timeout_s: float = 30.0
) -> SimIdentity:
    """Enroll one device on an enrollment channel (TLS, the controller's CA)."""
    token = EnrollmentToken.parse(token_text)
    key_pem, csr_pem = _key_and_csr()
    request = device_pb2.EnrollRequest(
        token=token.credential,
        csr_pem=csr_pem,
        facts=common_pb2.HardwareFacts(**dataclasses.asdict(SIMULATED_FACTS)),
        agent_version=AGENT_VERSION,
    )
    stub = device_pb2_grpc.DeviceServiceStub(channel)
    delay, deadline, unavailable = 0.02, time.monotonic() + ENROLL_PATIENCE_S, 0
    while True:
        try:
            response = stub.Enroll(request, timeout=timeout_s)
            break
        except grpc.RpcError as exc:
            # the controller admits 2 enrollments at once per address: every simulated device
            # shares this host's, so it waits its turn (as the agent retries with backoff)
            unavailable += exc.code() == grpc.StatusCode.UNAVAILABLE
            busy = exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED or 0 < unavailable <= 5
            if not busy or time.monotonic() > deadline:
                raise SimulationError(
                    f"enrollment refused: {exc.code().name}: {exc.details()}"
                ) from exc
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 0.5)
    return SimIdentity(
        device_id=response.device_id,
        endpoint=response.device_endpoint,
        mqtt_url=response.mqtt.url,
        mqtt_username=response.mqtt.username,
        mqtt_password=response.mqtt.password,
        key_pem=key_pem,
        cert_pem=response.certificate_pem.encode(),
        ca_pem=response.ca_certificate_pem.encode() or ca_pem,
    )


def status_payload(device_id: str, online: bool, unix_ms: int | None = None) -> bytes:
    return telemetry_pb2.DeviceStatus(
        device_id=device_id,
        online=online,
        unix_ms=_now_ms() if unix_ms is None else unix_ms,
        agent_version=AGENT_VERSION,
    ).SerializeToString()


def heartbeat_payload(device_id: str, sequence: int, uptime_s: int, variant: str) -> bytes:
    return telemetry_pb2.Heartbeat(
        device_id=device_id, unix_ms=_now_ms(), uptime_seconds=uptime_s,
        active_variant_id=variant, sequence=sequence,
    ).SerializeToString()  # fmt: skip


@dataclass
class ReportMaker:
    """A device's telemetry reports: one interval of ``frames`` frames each, sequence counting
    up. The histograms are drawn once (a few intervals, seeded per device, the same
    distribution for every variant) and reused, so a report costs a copy and a serialize."""

    device_id: str
    seed: int
    frames: int = 200
    sequence: int = 0
    interval_start_ms: int = dataclasses.field(default_factory=lambda: _now_ms())
    drawn: int = 4  # distinct intervals drawn

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self._intervals = [self._draw(rng) for _ in range(self.drawn)]

    def next(self, model: str, variant: str) -> bytes:
        now = _now_ms()
        report = report_pb2.TelemetryReport()
        report.CopyFrom(self._intervals[self.sequence % len(self._intervals)])
        self.sequence += 1
        report.device_id, report.model, report.variant_id = self.device_id, model, variant
        report.interval_start_unix_ms, report.interval_end_unix_ms = self.interval_start_ms, now
        report.sequence = self.sequence
        self.interval_start_ms = now
        return report.SerializeToString()

    def _draw(self, rng: random.Random) -> report_pb2.TelemetryReport:
        bounds = {h.name: h.bounds for h in HISTOGRAMS}
        hist = {name: [0] * (len(b) + 1) for name, b in bounds.items()}
        sums, counts = dict.fromkeys(hist, 0.0), dict.fromkeys(hist, 0)

        def observe(name: str, value: float) -> None:
            hist[name][bisect.bisect_left(bounds[name], value)] += 1
            sums[name] += value
            counts[name] += 1

        # the least confident tenth is offloaded, and the cloud agrees with 90% of those: the
        # same shares in every report, so gates comparing cohorts see no difference by chance
        confidences = sorted(min(1.0, rng.betavariate(8, 1.5)) for _ in range(self.frames))
        offloaded = round(self.frames * OFFLOADED_SHARE)
        for i, confidence in enumerate(confidences):
            local = rng.lognormvariate(1.0, 0.3)
            hard = i < offloaded
            observe("local_latency", local)
            observe("latency", local + (rng.lognormvariate(2.3, 0.3) if hard else 0.2))
            observe("confidence", confidence)
            if hard:
                observe("offload_rtt", rng.lognormvariate(2.2, 0.3))
        report = report_pb2.TelemetryReport(rss_bytes=64 << 20, cpu_percent=12.0)
        values = {"frames": self.frames, "offloaded": offloaded, "offload_pairs": offloaded,
                  "offload_agreed": round(offloaded * AGREED_SHARE)}  # fmt: skip
        for counter in COUNTERS:
            counter.write(report, values.get(counter.name, 0))
        for h in HISTOGRAMS:
            getattr(report, h.proto).CopyFrom(
                report_pb2.Histogram(
                    bounds=h.bounds, counts=hist[h.name], sum=sums[h.name], count=counts[h.name]
                )
            )
        return report


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
