"""The agent's one typed configuration, built at the entry point (`edgefleet-agent run`:
flag > environment > config file > default) and passed down; library code never reads the
environment."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edgefleet.errors import InvalidInput

UNPACED_LATENCY_BUDGET_MS = 250.0  # probation budget when frames are not paced (--fps 0)


@dataclass(frozen=True)
class OtaSettings:
    """Over-the-air updates: how often to pull, how long and how strictly to try a new model."""

    poll_interval_s: float = 30.0
    tick_interval_s: float = 1.0
    probation_s: float = 300.0
    # median local latency a new model may take on the running loop during probation:
    # None = the frame period at `fps` (a model slower than the camera drops frames), or
    # UNPACED_LATENCY_BUDGET_MS when frames are unpaced; 0 = no latency check
    latency_budget_ms: float | None = None
    max_error_rate: float = 0.05  # share of frames the model may fail on during probation
    probation_window: int = 20  # frames per probation health observation
    max_retries: int = 5
    backoff_base_s: float = 1.0
    smoke_frames: int = 4
    download_timeout_s: float = 30.0
    # artifacts over the presigned URL the controller offers (S3 store), else its stream
    artifact_urls: bool = True
    artifact_url_ca_file: Path | None = None  # the URL host's CA (a private MinIO); None = system


@dataclass(frozen=True)
class AgentConfig:
    data_dir: Path
    heartbeat_interval_s: float = 5.0
    rpc_timeout_s: float = 5.0
    max_message_bytes: int = 8 * 1024 * 1024
    mqtt_enabled: bool = True
    mqtt_url: str = ""  # override the broker from enrollment ("" = as enrolled)
    ota: OtaSettings | None = None  # None: no over-the-air updates
    # inference (with a model: model_dir, or what OTA installed)
    model_dir: Path | None = None
    source: str = ""
    offload_threshold: float | None = None  # fixed threshold ...
    offload_budget: float | None = None  # ... or a target fraction of frames (default 0.2)
    # a budget's target while its confidences drift from the variant's (PSI >= 0.25); 0 = off
    offload_shift_budget: float = 0.0
    confidence: str = "max_softmax"
    audit_rate: float = 0.02  # the least; the controller's desired state may ask for more
    audit_seed: int | None = None  # None: from the OS, so every device audits other frames
    offload_deadline_s: float = 0.5
    max_in_flight: int = 8
    telemetry_interval_s: float = 10.0
    spool_max_reports: int = 1000
    fps: float = 0.0
    skip_threshold: float | None = None
    loop: bool = False
    threads: int | None = None  # None: the thread count of the device's profile
    results_file: Path | None = None  # JSON lines of every answer (frame id, label, source)

    def __post_init__(self) -> None:
        if self.offload_threshold is not None and self.offload_budget is not None:
            raise InvalidInput("give an offload threshold or an offload budget, not both")
        for name in ("heartbeat_interval_s", "rpc_timeout_s", "telemetry_interval_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InvalidInput(f"{name} must be a positive number, not {value!r}")
        if not (math.isfinite(self.fps) and self.fps >= 0):
            raise InvalidInput(f"fps must be 0 (unpaced) or positive, not {self.fps!r}")
        if self.source and self.model_dir is None and self.ota is None:
            raise InvalidInput("a frame source needs a model (model_dir) or OTA updates")
        if not 0.0 <= self.offload_shift_budget <= 1.0:
            raise InvalidInput("offload_shift_budget must be in [0, 1]")
        if self.threads is not None and self.threads < 1:
            raise InvalidInput(f"threads must be at least 1, not {self.threads}")

    @property
    def probation_latency_budget_ms(self) -> float | None:
        """The resolved probation latency budget (None: no latency check)."""
        budget = self.ota.latency_budget_ms if self.ota is not None else None
        if budget is None:
            return 1000.0 / self.fps if self.fps > 0 else UNPACED_LATENCY_BUDGET_MS
        return budget if budget > 0 else None
