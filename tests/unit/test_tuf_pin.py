"""The TUF root a device pins at enrollment: only a well-formed, self-signed root, kept 0600."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.errors import AgentError
from agent.identity import pin_tuf_root
from controller.services.releases import TufPaths, initialise


@pytest.fixture(scope="module")
def root_json(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    repo = initialise(TufPaths(tmp_path_factory.mktemp("tuf")))
    return repo.metadata_file("root.json")


def test_a_signed_root_is_pinned_private(tmp_path: Path, root_json: bytes) -> None:
    pin_tuf_root(tmp_path, root_json)
    pinned = tmp_path / "tuf" / "root.json"
    assert pinned.read_bytes() == root_json and pinned.stat().st_mode & 0o777 == 0o600


def test_anything_else_is_refused(tmp_path: Path, root_json: bytes) -> None:
    forged = json.loads(root_json)
    forged["signed"]["expires"] = "2099-01-01T00:00:00Z"  # its signature no longer matches
    timestamp_like = json.loads(root_json)
    timestamp_like["signed"]["_type"] = "timestamp"
    for bad in (b"garbage", json.dumps(forged).encode(), json.dumps(timestamp_like).encode()):
        with pytest.raises(AgentError, match="invalid TUF root"):
            pin_tuf_root(tmp_path, bad)
    assert not (tmp_path / "tuf" / "root.json").exists()


def test_no_root_pins_nothing(tmp_path: Path) -> None:
    pin_tuf_root(tmp_path, b"")  # a controller too old to send one: updates will be refused
    assert not (tmp_path / "tuf").exists()
