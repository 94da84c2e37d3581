"""Rollout costs that follow the work: a step's device lookups are O(1) (every assigned device
was found by a scan of all: O(N^2)), and the download default follows what a replica serves."""

from __future__ import annotations

import time
from pathlib import Path

from controller.app import PRESIGNED_DOWNLOADS, rollout_download_default
from controller.config import ControllerConfig
from controller.rollout.model import DeviceRollout, RolloutState


def _state(n: int) -> RolloutState:
    return RolloutState(
        devices=tuple(
            DeviceRollout(f"dev-{i:06d}", "cpu", "pending", None, "m:1:v", 0, "", 0.0, False)
            for i in range(n)
        )
    )


def _lookup_all_s(state: RolloutState) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for d in state.devices:
            assert state.device(d.device_id) is d
        best = min(best, time.perf_counter() - started)
    return best


def test_looking_up_every_device_of_a_step_is_linear_in_the_fleet() -> None:
    small, large = _state(1_000), _state(8_000)
    ratio = _lookup_all_s(large) / _lookup_all_s(small)
    # 8x the devices: ~8x linear, ~64x for the old scan per lookup
    assert ratio < 24, f"8x the devices took {ratio:.1f}x the time"
    assert _state(3) == _state(3)  # the index is no field: equality and round trips unchanged
    assert RolloutState.from_dict(small.to_dict()) == small


def test_download_default_follows_what_a_replica_serves(tmp_path: Path) -> None:
    base = ControllerConfig(data_dir=tmp_path)
    assert rollout_download_default(base) == 10  # 32 workers: 8 streams, at least 10
    assert rollout_download_default(ControllerConfig(data_dir=tmp_path, grpc_workers=256)) == 64
    presigned = ControllerConfig(data_dir=tmp_path, store="s3://bucket/fleet")
    assert rollout_download_default(presigned) == PRESIGNED_DOWNLOADS
    off = ControllerConfig(data_dir=tmp_path, store="s3://b", artifact_url_lifetime_s=0)
    assert rollout_download_default(off) == 10
    assert (
        rollout_download_default(ControllerConfig(data_dir=tmp_path, rollout_max_downloads=7)) == 7
    )
