from __future__ import annotations

from pathlib import Path

import pytest

from agent.telemetry import DiskSpool


def test_delivers_in_order_and_acks(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path / "spool", max_reports=10)
    keys = [spool.append(f"report-{i}".encode()) for i in range(3)]
    assert keys == sorted(keys)
    assert [p for _, p in spool.pending()] == [b"report-0", b"report-1", b"report-2"]
    spool.ack(keys[0])
    assert [k for k, _ in spool.pending()] == keys[1:]
    assert len(spool) == 2


def test_bound_drops_oldest_and_counts_once(tmp_path: Path) -> None:
    spool = DiskSpool(tmp_path, max_reports=3)
    for i in range(5):
        spool.append(bytes([i]))
    assert [p for _, p in spool.pending()] == [b"\x02", b"\x03", b"\x04"]
    assert spool.take_dropped() == 2
    assert spool.take_dropped() == 0


def test_survives_restart(tmp_path: Path) -> None:
    first = DiskSpool(tmp_path, max_reports=2)
    for i in range(3):
        first.append(f"r{i}".encode())
    (tmp_path / "00000000000000000099.report.tmp").write_bytes(b"half-written")
    last_key = max(k for k, _ in first.pending())
    second = DiskSpool(tmp_path, max_reports=2)
    assert [p for _, p in second.pending()] == [b"r1", b"r2"]
    assert second.take_dropped() == 1  # the drop count survives too
    newer = second.append(b"r3")
    assert newer > last_key
    assert [p for _, p in second.pending()] == [b"r2", b"r3"]
    assert not list(tmp_path.glob("*.tmp"))


def test_rejects_zero_bound(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        DiskSpool(tmp_path, max_reports=0)
