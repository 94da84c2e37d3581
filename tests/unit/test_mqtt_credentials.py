"""Mosquitto password hashes and the generated password/ACL files."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from controller.errors import ConfigError
from controller.mqtt.acl import CONTROLLER_USERNAME
from controller.mqtt.credentials import (
    generate_password,
    hash_password,
    verify_password,
    write_mosquitto_auth,
)


def test_hash_has_mosquitto_format_and_verifies() -> None:
    hashed = hash_password("s3cret")
    _, scheme, iterations, salt, digest = hashed.split("$")
    assert (scheme, iterations) == ("7", "101")
    assert len(salt) == 16 and len(digest) == 88  # base64 of 12 and 64 bytes
    assert verify_password("s3cret", hashed)
    assert not verify_password("s3cret ", hashed)
    assert hash_password("s3cret") != hashed  # fresh salt every time


@pytest.mark.parametrize(
    "bad", ["", "plain", "$6$abc$def", "$7$x$AAAA$AAAA", "$7$101$!!!$AAAA", "$7$0$AAAA$AAAA"]
)
def test_malformed_hashes_never_verify(bad: str) -> None:
    assert not verify_password("anything", bad)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd missing")
def test_verifies_hashes_written_by_mosquitto_passwd(tmp_path: Path) -> None:
    pwfile = tmp_path / "pw"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(pwfile), "alice", "correct horse"],
        check=True,
        timeout=10,
        capture_output=True,
    )
    user, hashed = pwfile.read_text().strip().split(":", 1)
    assert user == "alice"
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong horse", hashed)


def test_generated_passwords_are_long_and_distinct() -> None:
    passwords = {generate_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(len(p) >= 40 for p in passwords)


def test_auth_files_are_private_and_list_only_given_devices(tmp_path: Path) -> None:
    dev_hash = hash_password("pw-a")
    pw_file, acl_file = write_mosquitto_auth(tmp_path / "mq", "ctl-pw", [("dev-a", dev_hash)])
    for path in (pw_file, acl_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entries = dict(line.split(":", 1) for line in pw_file.read_text().splitlines())
    assert set(entries) == {CONTROLLER_USERNAME, "dev-a"}
    assert entries["dev-a"] == dev_hash
    assert verify_password("ctl-pw", entries[CONTROLLER_USERNAME])
    acl = acl_file.read_text()
    assert "pattern write edgefleet/v1/devices/%u/heartbeat" in acl
    assert "pattern read edgefleet/v1/devices/%u/desired" in acl
    assert "pattern write edgefleet/v1/devices/%u/desired" not in acl

    write_mosquitto_auth(tmp_path / "mq", "ctl-pw", [])  # dev-a revoked
    assert "dev-a" not in pw_file.read_text()
    assert sorted(p.name for p in (tmp_path / "mq").iterdir()) == ["acl", "passwd"]  # no temp left


@pytest.mark.parametrize(
    "devices",
    [
        [("bad/id", "$7$101$AAAA$AAAA")],
        [(CONTROLLER_USERNAME, "$7$101$AAAA$AAAA")],
        [("dev-a", "plaintext")],
        [("dev-a", "$7$101$AAAA$AAAA"), ("dev-a", "$7$101$AAAA$AAAA")],
    ],
)
def test_refuses_bad_device_entries(tmp_path: Path, devices: list[tuple[str, str]]) -> None:
    with pytest.raises(ConfigError):
        write_mosquitto_auth(tmp_path, "ctl-pw", devices)
