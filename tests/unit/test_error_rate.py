"""error_rate, the health gate's input, counts what the device got wrong, not the cloud."""

from collections import Counter

from controller.services.telemetry import metrics_of
from controller.services.telemetry_math import Totals


def test_failed_offloads_are_not_device_errors() -> None:
    totals = Totals(
        reports=1,
        frames=100,
        offloaded=20,
        offload_failures=20,
        bad_frames=2,
        errors=Counter(
            {
                "offload_unknown_model": 20,
                "bad_frame": 1,
                "bad_frame:corrupt_image": 1,
                "inference": 3,
            }
        ),
    )
    metrics = metrics_of(totals, devices_reporting=1)
    assert metrics.error_rate == (2 + 3) / 102
    assert metrics.offload_failure_rate == 1.0
