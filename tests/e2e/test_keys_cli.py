"""`edgefleet keys`: offline root keys with a threshold, rotation, and refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "edgefleet"


def _keys(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN), "--data-dir", str(data_dir), "keys", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_offline_root_threshold_and_rotation(tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    made = _keys(
        tmp_path,
        "init",
        "--root-threshold",
        "2",
        "--root-keys",
        "3",
        "--offline-root",
        str(offline),
    )
    assert made.returncode == 0, made.stderr
    root_keys = sorted((offline / "root").glob("*.pem"))
    assert len(root_keys) == 3
    assert all(os.stat(k).st_mode & 0o777 == 0o600 for k in root_keys)
    listed = json.loads(_keys(tmp_path, "list", "--format", "json").stdout)
    roots = [k for k in listed if k["role"] == "root"]
    assert len(roots) == 3 and {k["threshold"] for k in roots} == {2}
    assert not any(k["local"] for k in roots), "root keys must stay offline"

    refused = _keys(tmp_path, "rotate", "timestamp", "--root-key", str(root_keys[0]))
    assert refused.returncode != 0
    assert refused.stderr.startswith("error:") and refused.stderr.count("\n") == 1
    old = {k["keyid"] for k in listed if k["role"] == "timestamp"}

    rotated = _keys(
        tmp_path,
        "rotate",
        "timestamp",
        "--root-key",
        str(root_keys[0]),
        "--root-key",
        str(root_keys[1]),
    )
    assert rotated.returncode == 0, rotated.stderr
    after = json.loads(_keys(tmp_path, "list", "--format", "json").stdout)
    new = {k["keyid"] for k in after if k["role"] == "timestamp"}
    assert new and new.isdisjoint(old)
    assert {k["root_version"] for k in after} == {2}
